"""Audit trail DTOs."""

from __future__ import annotations

from datetime import datetime

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
        return cls(
            id=e.id,
            at=e.at,
            actor=e.actor,
            actor_key_id=e.actor_key_id,
            action=e.action,
            target=e.target,
            node=e.node,
            outcome=e.outcome,
            error=e.error,
            finished_at=e.finished_at,
        )
