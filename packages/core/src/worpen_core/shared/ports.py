"""Ports several features use: the clock, the unit of work and cron schedules."""

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


class CronSchedule(Protocol):
    """Standard five-field cron expressions, in UTC."""

    def check(self, expression: str) -> str | None:
        """Why `expression` is not a valid cron expression, or None when it is."""
        ...

    def next_after(self, expression: str, after: datetime) -> datetime:
        """The first slot strictly after `after` (UTC-aware)."""
        ...
