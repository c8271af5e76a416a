"""ChannelRepository and DeliveryRepository (the notification outbox) on SQLAlchemy Core."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.automation.channels import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryQuery,
    DeliveryStatus,
)
from worpen_core.events.model import JsonValue
from worpen_core.shared.errors import Conflict
from worpen_infra.sql.tables import notification_channels, notification_deliveries


def _channel_row(channel: Channel) -> dict[str, Any]:
    """The table's columns are the channel's fields."""
    return {**dataclasses.asdict(channel), "kind": channel.kind.value}


def _channel(row: Row[Any]) -> Channel:
    return Channel(**{**row._mapping, "kind": ChannelKind(row.kind)})


def _delivery_row(delivery: Delivery) -> dict[str, Any]:
    return {**dataclasses.asdict(delivery), "status": delivery.status.value}


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(**{**row._mapping, "status": DeliveryStatus(row.status)})


class SqlAlchemyChannelRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, channel: Channel) -> None:
        try:
            await self._connection.execute(insert(notification_channels).values(_channel_row(channel)))
        except IntegrityError as exc:
            raise Conflict(f"a channel named {channel.name!r} exists already") from exc

    async def update(self, channel: Channel) -> None:
        table = notification_channels
        try:
            await self._connection.execute(
                update(table).where(table.c.id == channel.id).values(_channel_row(channel))
            )
        except IntegrityError as exc:
            raise Conflict(f"a channel named {channel.name!r} exists already") from exc

    async def remove(self, channel_id: str) -> None:
        table = notification_channels
        await self._connection.execute(delete(table).where(table.c.id == channel_id))

    async def get(self, channel_id: str) -> Channel | None:
        table = notification_channels
        row = (await self._connection.execute(select(table).where(table.c.id == channel_id))).first()
        return None if row is None else _channel(row)

    async def by_name(self, name: str) -> Channel | None:
        table = notification_channels
        row = (await self._connection.execute(select(table).where(table.c.name == name))).first()
        return None if row is None else _channel(row)

    async def named(self, names: Iterable[str]) -> set[str]:
        wanted = list(names)
        if not wanted:
            return set()
        table = notification_channels
        rows = await self._connection.execute(select(table.c.name).where(table.c.name.in_(wanted)))
        return {row.name for row in rows}

    async def list_all(self) -> list[Channel]:
        table = notification_channels
        rows = await self._connection.execute(select(table).order_by(table.c.name))
        return [_channel(row) for row in rows]


class SqlAlchemyDeliveryRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(
        self, channel: str, body: dict[str, JsonValue], run_id: str | None, at: datetime
    ) -> Delivery:
        delivery = Delivery(0, channel, body, DeliveryStatus.PENDING, 0, at, None, run_id, at)
        row = _delivery_row(delivery)
        del row["id"]
        result = await self._connection.execute(
            insert(notification_deliveries).values(row).returning(notification_deliveries.c.id)
        )
        delivery.id = result.scalar_one()
        return delivery

    async def update(self, delivery: Delivery) -> None:
        table = notification_deliveries
        await self._connection.execute(
            update(table).where(table.c.id == delivery.id).values(_delivery_row(delivery))
        )

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        table = notification_deliveries
        statement = (
            select(table)
            .where(table.c.status == DeliveryStatus.PENDING.value, table.c.next_attempt_at <= now)
            .order_by(table.c.next_attempt_at, table.c.id)
            .limit(limit)
        )
        return [_delivery(row) for row in await self._connection.execute(statement)]

    async def claim(self, ids: Iterable[int], now: datetime, until: datetime) -> set[int]:
        """One UPDATE whose WHERE is checked again on the row once a concurrent claim commits (PostgreSQL
        re-reads it under READ COMMITTED; SQLite has one writer): a row already moved is not taken."""
        table = notification_deliveries
        statement = (
            update(table)
            .where(
                table.c.id.in_(list(ids)),
                table.c.status == DeliveryStatus.PENDING.value,
                table.c.next_attempt_at <= now,
            )
            .values(next_attempt_at=until)
            .returning(table.c.id)
        )
        return set((await self._connection.execute(statement)).scalars())

    async def next_due(self) -> datetime | None:
        table = notification_deliveries
        statement = select(func.min(table.c.next_attempt_at)).where(
            table.c.status == DeliveryStatus.PENDING.value
        )
        earliest: datetime | None = (await self._connection.execute(statement)).scalar_one()
        return earliest

    async def query(self, query: DeliveryQuery) -> list[Delivery]:
        table = notification_deliveries
        statement = select(table).order_by(table.c.id.desc()).limit(query.limit)
        if query.status is not None:
            statement = statement.where(table.c.status == query.status.value)
        if query.channel is not None:
            statement = statement.where(table.c.channel == query.channel)
        return [_delivery(row) for row in await self._connection.execute(statement)]
