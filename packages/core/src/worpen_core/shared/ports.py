"""Ports several features use: the clock, the unit of work, cron schedules and leases."""

from __future__ import annotations

from datetime import datetime, timedelta
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


class Leases(Protocol):
    """Named leases shared by the replicas of one database: at most one holder per name at a time, until
    its lease expires. Each time a lease changes hands its fencing token grows, so work stamped with an
    older token can be told apart from the new holder's."""

    async def hold(self, name: str, holder: str, ttl: timedelta) -> int | None:
        """Take the lease `name` for `holder` until now + `ttl` if it is free, expired or already held by
        `holder` (a renewal); its fencing token, or None when another holder has it."""
        ...

    async def release(self, name: str, holder: str) -> None:
        """Give up the lease if `holder` has it (a clean stop), so another replica takes over at once."""
        ...
