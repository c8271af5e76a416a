"""SampleRepository on SQLAlchemy Core: telemetry samples, inserted in batches at the driver's speed."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.fleet.model import TelemetrySample
from worpen_core.fleet.readings import Readings, values_of
from worpen_infra.sql.bulk_write import BulkWrite
from worpen_infra.sql.dialects import SAMPLES, serialize_appends
from worpen_infra.sql.tables import SAMPLE_READINGS, agent_samples

_insert = BulkWrite(insert(agent_samples), ("agent_id", "at", *SAMPLE_READINGS))
_read = select(agent_samples.c.at, *(agent_samples.c[name] for name in SAMPLE_READINGS))


class SqlAlchemySampleRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, samples: Sequence[TelemetrySample]) -> None:
        if not samples:
            return
        await serialize_appends(self._connection, SAMPLES)
        await _insert.run(
            self._connection,
            ((sample.agent_id, sample.at, *values_of(sample.readings)) for sample in samples),
        )

    async def for_agent(self, agent_id: str, limit: int) -> list[TelemetrySample]:
        rows = await self._connection.execute(
            _read.where(agent_samples.c.agent_id == agent_id)
            .order_by(agent_samples.c.at.desc(), agent_samples.c.id.desc())
            .limit(limit)
        )
        return [TelemetrySample(agent_id, row[0], Readings(*row[1:])) for row in rows]
