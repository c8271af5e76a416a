"""What the audit trail needs from storage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from worpen_core.audit.model import AuditEntry, AuditQuery
from worpen_core.shared.ports import UnitOfWork


class AuditRepository(Protocol):
    async def add(self, entry: AuditEntry) -> None: ...

    async def update(self, entry: AuditEntry) -> None: ...

    async def query(self, query: AuditQuery) -> list[AuditEntry]:
        """Matching entries, newest first."""
        ...


class AuditUnitOfWork(UnitOfWork, Protocol):
    """A transaction over the audit trail."""

    audit: AuditRepository


AuditUnitOfWorkFactory = Callable[[], AuditUnitOfWork]
