"""SampleRepository on SQLAlchemy Core: telemetry samples, inserted in batches at the driver's speed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.fleet.model import TelemetrySample
from worpen_infra.sql.bulk_write import BulkWrite
from worpen_infra.sql.tables import agent_samples

_columns = [column for column in agent_samples.c if column.name != "id"]
_FIELDS = ("agent_id", "at", "cpu", "ram", "disk", "net_rx_bytes", "net_tx_bytes", "uptime_seconds")
_insert = BulkWrite(insert(agent_samples), _FIELDS)


class SqlAlchemySampleRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, samples: Sequence[TelemetrySample]) -> None:
        await _insert.run(
            self._connection,
            (
                (s.agent_id, s.at, s.cpu, s.ram, s.disk, s.net_rx_bytes, s.net_tx_bytes, s.uptime_seconds)
                for s in samples
            ),
        )

    async def for_agent(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        rows = await self._connection.execute(
            select(*_columns)
            .where(agent_samples.c.agent_id == agent_id)
            .order_by(agent_samples.c.at.desc(), agent_samples.c.id.desc())
            .limit(limit)
        )
        return [TelemetrySample(**row._asdict()) for row in rows]
