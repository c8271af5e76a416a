"""The registry of agents' streams (core AgentRegistry) on SQLAlchemy Core: one row per connected agent,
naming the replica that holds its stream. Each call is its own short transaction: the registry is written
when a stream attaches or ends, and read by every replica's refresh."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable

from worpen_core.agents.model import AgentHello, Connection, StreamHolder
from worpen_core.shared.errors import Unavailable
from worpen_infra.sql.tables import agent_streams
from worpen_infra.sql.unit_of_work import translate


class SqlAlchemyAgentRegistry:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def record(self, holder: StreamHolder) -> None:
        connection = holder.connection
        hello = connection.hello
        values = {
            "replica_id": holder.replica_id,
            "address": holder.address,
            "connected_at": connection.connected_at,
            "peer": connection.peer,
            "hello": json.dumps(
                {
                    "version": hello.version,
                    "protocol": hello.protocol,
                    "capabilities": sorted(hello.capabilities),
                    "labels": hello.labels,
                },
                separators=(",", ":"),
            ),
        }
        statement = (
            self._insert(agent_streams)
            .values(agent_id=hello.id, **values)
            .on_conflict_do_update(index_elements=[agent_streams.c.agent_id], set_=values)
        )
        await self._write(statement)

    async def forget(self, holder: StreamHolder) -> None:
        await self._write(
            delete(agent_streams).where(
                agent_streams.c.agent_id == holder.agent_id,
                agent_streams.c.replica_id == holder.replica_id,
                agent_streams.c.connected_at == holder.connection.connected_at,
            )
        )

    async def forget_replica(self, replica_id: str) -> None:
        await self._write(delete(agent_streams).where(agent_streams.c.replica_id == replica_id))

    async def holder(self, agent_id: str) -> StreamHolder | None:
        rows = await self._read(select(agent_streams).where(agent_streams.c.agent_id == agent_id))
        return _holder(rows[0]) if rows else None

    async def holders(self) -> list[StreamHolder]:
        return [_holder(row) for row in await self._read(select(agent_streams))]

    async def _write(self, statement: Executable) -> None:
        try:
            async with self._engine.begin() as connection:
                await connection.execute(statement)
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        except OSError as exc:  # a connection the driver lost before SQLAlchemy could wrap the error
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc

    async def _read(self, statement: Executable) -> Sequence[Row[Any]]:
        try:
            async with self._engine.connect() as connection:
                return (await connection.execute(statement)).all()
        except SQLAlchemyError as exc:
            raise translate(exc) from exc
        except OSError as exc:
            raise Unavailable("database", str(exc) or type(exc).__name__) from exc


def _holder(row: Row[Any]) -> StreamHolder:
    hello = json.loads(row.hello)
    return StreamHolder(
        connection=Connection(
            hello=AgentHello(
                id=row.agent_id,
                version=hello["version"],
                protocol=hello["protocol"],
                capabilities=frozenset(hello["capabilities"]),
                labels=dict(hello["labels"]),
            ),
            peer=row.peer,
            connected_at=row.connected_at,
        ),
        replica_id=row.replica_id,
        address=row.address,
    )
