"""Incident DTOs: the cockpit's `Incident` (id, service, node, issue, action, status, time) and the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from worpen_api.http.wire import Wire
from worpen_core.incidents.model import (
    MESSAGE_MAX_LENGTH,
    Incident,
    IncidentStatus,
    ResolutionMethod,
    Severity,
    TimelineKind,
)


class IncidentOut(Wire):
    id: str
    service: str
    node: str
    issue: str
    action: str
    status: IncidentStatus
    time: datetime
    """When it opened (the cockpit's time), as `openedAt`."""
    severity: Severity
    trigger: str | None
    rule_id: str | None
    dedup_key: str
    occurrences: int
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    method: ResolutionMethod | None
    notes: str | None

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        return msgspec.convert(incident, cls, from_attributes=True)


class TimelineEntryOut(Wire):
    at: datetime
    kind: TimelineKind
    message: str


class IncidentDetailOut(IncidentOut):
    timeline: list[TimelineEntryOut]
    """Oldest first: opened, occurrences, remediation steps, escalation, resolution."""

    @classmethod
    def of(cls, incident: Incident) -> IncidentDetailOut:
        return msgspec.convert(incident, cls, from_attributes=True)


class ResolveIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    method: Literal["MANUAL"] = "MANUAL"
    """Incidents resolved through the API are resolved by hand; AUTO is Worpen's own."""
    notes: Annotated[str, Meta(max_length=MESSAGE_MAX_LENGTH)] = ""
