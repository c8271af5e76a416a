"""The audit trail's entries: who did what, to what, and how it ended."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Outcome(StrEnum):
    PENDING = "PENDING"
    """Written before the operation runs; stays so only if Worpen died before it could record the end."""
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: datetime
    actor: str
    """The name of the API key that asked."""
    actor_key_id: str
    action: str
    """'container.start', 'image.pull', 'docker.prune', 'terminal.open', ..."""
    target: str
    node: str | None
    outcome: Outcome = Outcome.PENDING
    error: str | None = None
    finished_at: datetime | None = None

    @staticmethod
    def begin(
        at: datetime, actor: str, actor_key_id: str, action: str, target: str, node: str | None
    ) -> AuditEntry:
        return AuditEntry(secrets.token_hex(8), at, actor, actor_key_id, action, target, node)

    def finish(self, at: datetime, error: str | None = None) -> AuditEntry:
        outcome = Outcome.SUCCEEDED if error is None else Outcome.FAILED
        return dataclasses.replace(self, outcome=outcome, error=error, finished_at=at)


@dataclass(frozen=True, slots=True)
class AuditQuery:
    since: datetime | None = None
    actor: str | None = None
    action: str | None = None
    limit: int = 100
