"""What notifications need from the outside: storage for channels and the outbox, and a sender that
posts to a channel's URL."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Protocol

from worpen_core.automation.channels import Channel, Delivery, DeliveryQuery
from worpen_core.events.model import JsonValue
from worpen_core.shared.ports import UnitOfWork


class ChannelRepository(Protocol):
    async def add(self, channel: Channel) -> None:
        """Raises Conflict when a channel has that name already."""
        ...

    async def update(self, channel: Channel) -> None:
        """Raises Conflict when another channel has that name already."""
        ...

    async def remove(self, channel_id: str) -> None: ...

    async def get(self, channel_id: str) -> Channel | None: ...

    async def by_name(self, name: str) -> Channel | None: ...

    async def named(self, names: Iterable[str]) -> set[str]:
        """Which of `names` are channels' names."""
        ...

    async def list_all(self) -> list[Channel]:
        """By name."""
        ...


class DeliveryRepository(Protocol):
    async def add(
        self, channel: str, body: dict[str, JsonValue], run_id: str | None, at: datetime
    ) -> Delivery:
        """A new PENDING delivery, due at `at`, numbered by the store."""
        ...

    async def update(self, delivery: Delivery) -> None: ...

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        """At most `limit` PENDING deliveries due at or before `now`, the earliest due first."""
        ...

    async def claim(self, ids: Iterable[int], now: datetime, until: datetime) -> set[int]:
        """Take deliveries for one attempt: move the next attempt of those of `ids` still PENDING and due
        at `now` to `until`, atomically; the ids this call took (of senders claiming one delivery at
        once, one takes it)."""
        ...

    async def next_due(self) -> datetime | None:
        """When the earliest PENDING delivery is due, if any is."""
        ...

    async def query(self, query: DeliveryQuery) -> list[Delivery]:
        """Matching deliveries, newest first."""
        ...


class NotificationsUnitOfWork(UnitOfWork, Protocol):
    """A transaction over channels and the outbox."""

    channels: ChannelRepository
    deliveries: DeliveryRepository


NotificationsUnitOfWorkFactory = Callable[[], NotificationsUnitOfWork]


class WebhookSender(Protocol):
    """Posts to channels' URLs, refusing addresses inside the network Worpen runs in (loopback,
    link-local such as cloud metadata, private ranges) unless told otherwise."""

    async def check(self, url: str) -> None:
        """Raises InvalidInput(field="url") when `url`'s host resolves to a refused address (or to
        none), so that such a channel is refused when it is saved."""
        ...

    async def send(self, url: str, body: bytes, headers: Mapping[str, str]) -> None:
        """POST `body` to `url`, without following redirects; the addresses are checked again as the
        connection is made (DNS may have changed). Raises InvalidInput for a refused address, EngineFailed
        when the receiver refused the request for good (a 3xx or a 4xx other than 408 and 429), and
        Unavailable or TimedOut for what a later attempt may get through (no connection, a timeout, a 5xx,
        408, 429)."""
        ...
