"""Ports every feature uses: the clock and the unit of work."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Protocol, Self


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        ...


class UnitOfWork(Protocol):
    """The one transaction boundary: leaving it without `commit()` rolls everything back. Each feature
    declares the repositories it needs on its own unit of work (FleetUnitOfWork...); one adapter provides
    them all."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def commit(self) -> None: ...
