"""Audit trail DTOs."""

from __future__ import annotations

from datetime import datetime

import msgspec

from worpen_api.http.wire import Wire
from worpen_core.audit.model import AuditEntry, Outcome


class AuditOut(Wire):
    id: str
    at: datetime
    actor: str
    actor_key_id: str
    action: str
    target: str
    node: str | None
    outcome: Outcome
    error: str | None
    finished_at: datetime | None

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return msgspec.convert(e, cls, from_attributes=True)
