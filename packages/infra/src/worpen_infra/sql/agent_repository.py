"""AgentRepository on SQLAlchemy Core: agents read back with the readings of their newest sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.fleet.model import PROFILE, Agent, TelemetrySample
from worpen_core.fleet.readings import Readings, values_of
from worpen_core.fleet.status import AgentStatus
from worpen_infra.sql.bulk_write import BulkWrite
from worpen_infra.sql.tables import AGENT_READINGS, SAMPLE_READINGS, agent_samples, agents

_update_whole = (
    update(agents)
    .where(agents.c.id == bindparam("b_id"))
    .values({column.name: bindparam(column.name) for column in agents.c if column.name != "id"})
)
_update_profiles = BulkWrite(
    update(agents)
    .where(agents.c.id == bindparam("b_id"))
    .values({name: bindparam(name) for name in PROFILE}),
    ("b_id", *PROFILE),
)


def _to_row(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "name": agent.name,
        "status": agent.status.value,
        "reported_status": agent.reported_status.value,
        "last_seen": agent.last_seen,
        "registered_at": agent.registered_at,
        "ip": agent.ip,
        "os": agent.os,
        "version": agent.version,
        "peers": list(agent.peers),
        **dict(zip(AGENT_READINGS, values_of(agent.readings), strict=True)),
    }


_newest_sample = (
    select(agent_samples.c.id)
    .where(agent_samples.c.agent_id == agents.c.id)
    .order_by(agent_samples.c.at.desc(), agent_samples.c.id.desc())
    .limit(1)
    .correlate(agents)
    .scalar_subquery()
)
_SAMPLE_COLUMNS = ("at", *SAMPLE_READINGS)
_caught_up = select(
    agents, *(agent_samples.c[name].label(f"sample_{name}") for name in _SAMPLE_COLUMNS)
).select_from(agents.outerjoin(agent_samples, agent_samples.c.id == _newest_sample))
"""Each agent's row and the readings of its newest sample (one index seek per agent), if it has any."""


def _from_row(row: Row[Any]) -> Agent:
    values = row._mapping
    agent = Agent(
        id=row.id,
        name=row.name,
        status=AgentStatus(row.status),
        reported_status=AgentStatus(row.reported_status),
        readings=Readings(*(values[name] for name in AGENT_READINGS)),
        last_seen=row.last_seen,
        registered_at=row.registered_at,
        ip=row.ip,
        os=row.os,
        version=row.version,
        peers=tuple(row.peers),
    )
    if row.sample_at is not None:
        newest = Readings(*(values[f"sample_{name}"] for name in SAMPLE_READINGS))
        agent.catch_up(TelemetrySample(agent.id, row.sample_at, newest))
    return agent


class SqlAlchemyAgentRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, agent_id: str) -> Agent | None:
        row = (await self._connection.execute(_caught_up.where(agents.c.id == agent_id))).first()
        return None if row is None else _from_row(row)

    async def list_all(self) -> list[Agent]:
        rows = await self._connection.execute(_caught_up.order_by(agents.c.id))
        return [_from_row(row) for row in rows]

    async def save(self, items: Sequence[Agent]) -> None:
        if not items:
            return
        ids = [agent.id for agent in items]
        existing = set(
            (await self._connection.execute(select(agents.c.id).where(agents.c.id.in_(ids)))).scalars()
        )
        fresh = [_to_row(agent) for agent in items if agent.id not in existing]
        known = [{**_to_row(agent), "b_id": agent.id} for agent in items if agent.id in existing]
        if fresh:
            await self._connection.execute(insert(agents), fresh)
        if known:
            for row in known:
                del row["id"]
            await self._connection.execute(_update_whole, known)

    async def save_profiles(self, items: Sequence[Agent]) -> None:
        await _update_profiles.run(
            self._connection,
            (
                (
                    agent.id,
                    agent.reported_status.value,
                    agent.name,
                    agent.ip,
                    agent.os,
                    agent.version,
                    agent.peers,
                )
                for agent in items
            ),
        )
