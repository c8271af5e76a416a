"""The limits shared by replicas in memory: one instance stands for the database of several replicas."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from datetime import datetime

from worpen_core.containers.ports import SessionSlot, SlotsInUse
from worpen_core.shared.errors import Unavailable


class FakeFailedAuthLog:
    def __init__(self) -> None:
        self.failures: list[tuple[str, datetime]] = []
        self.calls = 0

    async def record(
        self, client: str, at: datetime, since: datetime, most: int, *, keep_since: datetime
    ) -> list[datetime]:
        self.calls += 1
        self.failures = [(who, when) for who, when in self.failures if when > keep_since]
        self.failures.append((client, at))
        recent = (when for who, when in self.failures if who == client and when > since)
        return sorted(recent, reverse=True)[:most]

    async def count_since(self, since: datetime) -> int:
        return sum(1 for _, when in self.failures if when > since)


class FakeSessionSlots:
    def __init__(self) -> None:
        self.slots: dict[str, SessionSlot] = {}
        self.broken = False
        """Set to make giving a slot back fail as a lost database does."""

    async def take(
        self, slot: SessionSlot, *, per_key: int, total: int, fresh_since: datetime
    ) -> SlotsInUse | None:
        self.slots = {id_: s for id_, s in self.slots.items() if s.renewed_at >= fresh_since}
        of_key = sum(1 for s in self.slots.values() if s.key_id == slot.key_id)
        if of_key >= per_key or len(self.slots) >= total:
            return SlotsInUse(of_key, len(self.slots))
        self.slots[slot.id] = slot
        return None

    async def give_back(self, slot_id: str) -> None:
        if self.broken:
            raise Unavailable("database", "the fake database is down")
        self.slots.pop(slot_id, None)

    async def renew(self, replica_id: str, held: Collection[str], at: datetime) -> None:
        self.slots = {
            id_: replace(s, renewed_at=at) if id_ in held else s
            for id_, s in self.slots.items()
            if s.replica_id != replica_id or id_ in held or s.renewed_at >= at
        }

    async def forget_replica(self, replica_id: str) -> None:
        self.slots = {id_: s for id_, s in self.slots.items() if s.replica_id != replica_id}
