"""The audit trail: an entry written before an operation runs, its outcome after."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from worpen_core.access.model import Principal
from worpen_core.audit.events import OperationAudited
from worpen_core.audit.model import AuditEntry, AuditQuery
from worpen_core.audit.ports import AuditUnitOfWorkFactory
from worpen_core.events.ports import EventBus
from worpen_core.shared.errors import (
    WorpenError,
    failure_reason,
)
from worpen_core.shared.ports import Clock

T = TypeVar("T")


class AuditTrail:
    """Writes an entry before an operation runs and its outcome after, so the trail never says an
    operation did not happen when it did: if the entry cannot be written, the operation is not run; if
    the outcome cannot be written yet, it is kept and written by `flush()`. Each outcome is also
    published (OperationAudited), so that it reaches the journal and the central log."""

    def __init__(self, uow: AuditUnitOfWorkFactory, clock: Clock, bus: EventBus) -> None:
        self._uow = uow
        self._clock = clock
        self._bus = bus
        self._unwritten: list[AuditEntry] = []

    async def begin(self, principal: Principal, action: str, target: str, node: str | None) -> AuditEntry:
        """Write the entry of an operation about to run; if this fails, the operation must not run."""
        entry = AuditEntry.begin(self._clock.now(), principal.name, principal.key_id, action, target, node)
        async with self._uow() as tx:
            await tx.audit.add(entry)
            await tx.commit()
        return entry

    async def end(self, entry: AuditEntry, error: str | None = None) -> None:
        """Record how the operation ended (kept for `flush()` if it cannot be written now)."""
        finished = entry.finish(self._clock.now(), error)
        try:
            async with self._uow() as tx:
                await tx.audit.update(finished)
                await tx.commit()
        except WorpenError:
            self._unwritten.append(finished)
        await self._bus.publish([OperationAudited.of(finished)])

    async def run(
        self,
        principal: Principal,
        action: str,
        target: str,
        node: str | None,
        operation: Callable[[], Awaitable[T]],
    ) -> T:
        entry = await self.begin(principal, action, target, node)
        try:
            result = await operation()
        except BaseException as exc:
            await self.end(entry, failure_reason(exc))
            raise
        await self.end(entry)
        return result

    async def query(self, query: AuditQuery) -> list[AuditEntry]:
        async with self._uow() as tx:
            return await tx.audit.query(query)

    async def flush(self) -> int:
        """Write the outcomes that could not be written when their operation ended."""
        if not self._unwritten:
            return 0
        pending, self._unwritten = self._unwritten, []
        try:
            async with self._uow() as tx:
                for entry in pending:
                    await tx.audit.update(entry)
                await tx.commit()
        except BaseException:
            self._unwritten[:0] = pending
            raise
        return len(pending)
