"""SampleRepository on SQLAlchemy Core: telemetry samples, inserted in batches."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.agents import TelemetrySample
from worpen_infra.tables import agent_samples

_columns = [column for column in agent_samples.c if column.name != "id"]


class SqlAlchemySampleRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, samples: Sequence[TelemetrySample]) -> None:
        if samples:
            rows = [
                {
                    "agent_id": s.agent_id,
                    "at": s.at,
                    "cpu": s.cpu,
                    "ram": s.ram,
                    "disk": s.disk,
                    "net_rx_bytes": s.net_rx_bytes,
                    "net_tx_bytes": s.net_tx_bytes,
                    "uptime_seconds": s.uptime_seconds,
                }
                for s in samples
            ]
            await self._connection.execute(insert(agent_samples), rows)

    async def for_agent(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        rows = await self._connection.execute(
            select(*_columns)
            .where(agent_samples.c.agent_id == agent_id)
            .order_by(agent_samples.c.at.desc(), agent_samples.c.id.desc())
            .limit(limit)
        )
        return [TelemetrySample(**row._asdict()) for row in rows]
