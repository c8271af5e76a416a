"""Leases in memory, on the test's clock: one shared instance stands for the database of several
replicas."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from worpen_core.shared.errors import Unavailable
from worpen_core.shared.ports import Clock


@dataclass(slots=True)
class _Lease:
    holder: str
    token: int
    expires_at: datetime


class FakeLeases:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self.broken = False
        """Set to make every call fail as a lost database does."""

    async def hold(self, name: str, holder: str, ttl: timedelta) -> int | None:
        if self.broken:
            raise Unavailable("database", "the fake database is down")
        now = self._clock.now()
        lease = self._leases.get(name)
        if lease is None:
            lease = self._leases[name] = _Lease(holder, 1, now + ttl)
            return lease.token
        if lease.holder != holder and lease.expires_at > now:
            return None
        if lease.holder != holder:
            lease.holder = holder
            lease.token += 1
        lease.expires_at = now + ttl
        return lease.token

    async def release(self, name: str, holder: str) -> None:
        if self.broken:
            raise Unavailable("database", "the fake database is down")
        lease = self._leases.get(name)
        if lease is not None and lease.holder == holder:
            lease.expires_at = self._clock.now()

    def holder(self, name: str) -> str | None:
        """Who holds `name` now, if anyone."""
        lease = self._leases.get(name)
        if lease is None or lease.expires_at <= self._clock.now():
            return None
        return lease.holder
