"""What the audit trail tells the rest of Worpen: an operation made through it ended."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.audit.model import AuditEntry, Outcome
from worpen_core.events.model import Event


@dataclass(frozen=True, slots=True)
class OperationAudited(Event):
    """An operation made through Worpen ended; `entry_id` is its audit trail entry."""

    entry_id: str
    actor: str
    action: str
    target: str
    node: str | None
    outcome: Outcome
    error: str | None
    at: datetime

    @property
    def subject(self) -> str:
        return self.target if self.node is None else f"{self.node}/{self.target}"

    @staticmethod
    def of(entry: AuditEntry) -> OperationAudited:
        return OperationAudited(
            entry.id,
            entry.actor,
            entry.action,
            entry.target,
            entry.node,
            entry.outcome,
            entry.error,
            entry.finished_at or entry.at,
        )
