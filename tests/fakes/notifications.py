"""The channel and delivery repositories, in memory: a transaction's writes are staged and reach the tables
every unit of work of one Store shares when it commits."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from datetime import datetime
from weakref import WeakKeyDictionary

from tests.fakes.store import Store
from worpen_core.automation.channels import Channel, Delivery, DeliveryQuery, DeliveryStatus
from worpen_core.events.model import JsonValue
from worpen_core.shared.errors import Conflict


@dataclasses.dataclass
class _Tables:
    channels: dict[str, Channel] = dataclasses.field(default_factory=dict)
    deliveries: dict[int, Delivery] = dataclasses.field(default_factory=dict)
    last_delivery_id: int = 0
    """The last id handed out: ids of a transaction rolled back are not handed out again, as SQLite's."""


_tables: WeakKeyDictionary[Store, _Tables] = WeakKeyDictionary()
"""The notification tables of each Store (kept beside it, as the Store has no fields of theirs)."""


class FakeChannelRepository:
    def __init__(self, tables: _Tables) -> None:
        self._tables = tables
        self._staged: dict[str, Channel | None] = {}
        """By id; None for a channel removed in this transaction."""

    def _rows(self) -> dict[str, Channel]:
        rows = {**self._tables.channels, **self._staged}
        return {key: channel for key, channel in rows.items() if channel is not None}

    def _check_name(self, channel: Channel) -> None:
        if any(o.name == channel.name and o.id != channel.id for o in self._rows().values()):
            raise Conflict(f"a channel named {channel.name!r} exists already")

    async def add(self, channel: Channel) -> None:
        if channel.id in self._rows():
            raise Conflict(f"channel {channel.id!r} exists already")
        self._check_name(channel)
        self._staged[channel.id] = copy.copy(channel)

    async def update(self, channel: Channel) -> None:
        if channel.id in self._rows():
            self._check_name(channel)
            self._staged[channel.id] = copy.copy(channel)

    async def remove(self, channel_id: str) -> None:
        self._staged[channel_id] = None

    async def get(self, channel_id: str) -> Channel | None:
        found = self._rows().get(channel_id)
        return None if found is None else copy.copy(found)

    async def by_name(self, name: str) -> Channel | None:
        found = next((c for c in self._rows().values() if c.name == name), None)
        return None if found is None else copy.copy(found)

    async def named(self, names: Iterable[str]) -> set[str]:
        stored = {channel.name for channel in self._rows().values()}
        return {name for name in names if name in stored}

    async def list_all(self) -> list[Channel]:
        return [copy.copy(c) for c in sorted(self._rows().values(), key=lambda c: c.name)]

    def commit(self) -> None:
        for channel_id, channel in self._staged.items():
            if channel is None:
                self._tables.channels.pop(channel_id, None)
            else:
                self._tables.channels[channel_id] = channel
        self.discard()

    def discard(self) -> None:
        self._staged.clear()


class FakeDeliveryRepository:
    def __init__(self, tables: _Tables) -> None:
        self._tables = tables
        self._staged: dict[int, Delivery] = {}

    def _rows(self) -> dict[int, Delivery]:
        return {**self._tables.deliveries, **self._staged}

    async def add(
        self, channel: str, body: dict[str, JsonValue], run_id: str | None, at: datetime
    ) -> Delivery:
        self._tables.last_delivery_id += 1
        delivery = Delivery(
            self._tables.last_delivery_id,
            channel,
            copy.deepcopy(body),
            DeliveryStatus.PENDING,
            0,
            at,
            None,
            run_id,
            at,
        )
        self._staged[delivery.id] = copy.copy(delivery)
        return delivery

    async def update(self, delivery: Delivery) -> None:
        if delivery.id in self._rows():
            self._staged[delivery.id] = copy.copy(delivery)

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        due = [
            d
            for d in self._rows().values()
            if d.status is DeliveryStatus.PENDING and d.next_attempt_at <= now
        ]
        due.sort(key=lambda d: (d.next_attempt_at, d.id))
        return [copy.copy(d) for d in due[:limit]]

    async def claim(self, ids: Iterable[int], now: datetime, until: datetime) -> set[int]:
        taken = set()
        for delivery_id in ids:
            found = self._rows().get(delivery_id)
            if found and found.status is DeliveryStatus.PENDING and found.next_attempt_at <= now:
                self._staged[delivery_id] = dataclasses.replace(found, next_attempt_at=until)
                taken.add(delivery_id)
        return taken

    async def next_due(self) -> datetime | None:
        pending = [d.next_attempt_at for d in self._rows().values() if d.status is DeliveryStatus.PENDING]
        return min(pending, default=None)

    async def query(self, query: DeliveryQuery) -> list[Delivery]:
        matching = [
            d
            for d in self._rows().values()
            if (query.status is None or d.status is query.status)
            and (query.channel is None or d.channel == query.channel)
        ]
        matching.sort(key=lambda d: d.id, reverse=True)
        return [copy.copy(d) for d in matching[: query.limit]]

    def commit(self) -> None:
        self._tables.deliveries.update(self._staged)
        self.discard()

    def discard(self) -> None:
        self._staged.clear()


class FakeNotifications:
    """One transaction's channel and delivery repositories."""

    def __init__(self, store: Store) -> None:
        tables = _tables.setdefault(store, _Tables())
        self.channels = FakeChannelRepository(tables)
        self.deliveries = FakeDeliveryRepository(tables)

    def commit(self) -> None:
        self.channels.commit()
        self.deliveries.commit()

    def discard(self) -> None:
        self.channels.discard()
        self.deliveries.discard()
