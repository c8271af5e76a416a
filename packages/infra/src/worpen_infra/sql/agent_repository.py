"""AgentRepository on SQLAlchemy Core: agents read back with the readings of their newest sample, saved
against their revision (optimistic concurrency between replicas)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, func, literal_column, null, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.fleet.events import Metric
from worpen_core.fleet.model import PROFILE, Agent, Healing, TelemetrySample
from worpen_core.fleet.readings import Readings, values_of
from worpen_core.fleet.status import AgentStatus
from worpen_infra.sql.bulk_write import BulkWrite
from worpen_infra.sql.tables import AGENT_READINGS, SAMPLE_READINGS, agent_samples, agents

_update_whole = (
    update(agents)
    .where(agents.c.id == bindparam("b_id"), agents.c.revision == bindparam("b_revision"))
    .values({column.name: bindparam(column.name) for column in agents.c if column.name != "id"})
)
"""One agent at a time: its row count says whether the row was still at the revision the agent was read
at (executemany sums the counts, and cannot say which rows another replica changed first)."""


_insert_new = {
    module.dialect.name: module.insert(agents)
    .on_conflict_do_nothing(index_elements=["id"])
    .returning(agents.c.id)
    for module in (postgresql, sqlite)
}
"""Registrations, per dialect (each spells ON CONFLICT alike but compiles only its own); an agent another
replica registered first is not inserted and not returned."""
_update_profiles = BulkWrite(
    update(agents)
    .where(agents.c.id == bindparam("b_id"))
    .values(
        {
            **{name: bindparam(name) for name in PROFILE},
            "revision": agents.c.revision + literal_column("1"),
            "changed_at": bindparam("changed_at"),
        }
    ),
    ("b_id", *PROFILE, "changed_at"),
)


_CHUNK = 1000
"""Agents read back per statement."""


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
        "alerts": ",".join(sorted(agent.alerts)),
        "revision": agent.revision + 1,
        "changed_at": agent.changed_at,
        "healing": _healing_document(agent.healing),
    }


def _healing_document(healing: Healing | None) -> object:
    """The remediations as stored: SQL NULL when none runs (None alone would be JSON's null)."""
    if healing is None:
        return null()
    return {"reasons": list(healing.reasons), "underneath": healing.underneath.value}


def _healing_of(document: Any) -> Healing | None:
    if document is None:
        return None
    return Healing(tuple(document["reasons"]), AgentStatus(document["underneath"]))


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
        alerts=frozenset(Metric(name) for name in row.alerts.split(",") if name),
        healing=_healing_of(row.healing),
        revision=row.revision,
        changed_at=row.changed_at,
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

    async def get_many(self, agent_ids: Sequence[str]) -> list[Agent]:
        """In chunks: a sweep may read back thousands of agents, beyond a statement's bound parameters."""
        found: list[Agent] = []
        for start in range(0, len(agent_ids), _CHUNK):
            chunk = agent_ids[start : start + _CHUNK]
            rows = await self._connection.execute(_caught_up.where(agents.c.id.in_(chunk)))
            found.extend(_from_row(row) for row in rows)
        return found

    async def list_all(self) -> list[Agent]:
        rows = await self._connection.execute(_caught_up.order_by(agents.c.id))
        return [_from_row(row) for row in rows]

    async def changed_since(self, since: datetime) -> list[Agent]:
        rows = await self._connection.execute(_caught_up.where(agents.c.changed_at >= since))
        return [_from_row(row) for row in rows]

    async def newest_samples(self, after: int | None) -> tuple[list[TelemetrySample], int]:
        if after is None:
            last = (await self._connection.execute(select(func.max(agent_samples.c.id)))).scalar()
            return [], last or 0
        newest = (
            select(func.max(agent_samples.c.id).label("id"))
            .where(agent_samples.c.id > after)
            .group_by(agent_samples.c.agent_id)
            .subquery()
        )
        rows = (
            await self._connection.execute(
                select(agent_samples).join(newest, newest.c.id == agent_samples.c.id)
            )
        ).all()
        samples = [
            TelemetrySample(row.agent_id, row.at, Readings(*(row._mapping[name] for name in SAMPLE_READINGS)))
            for row in rows
        ]
        return samples, max((row.id for row in rows), default=after)

    async def save(self, items: Sequence[Agent]) -> list[str]:
        """Rows written in id order, so that two replicas saving the same agents wait for each other
        instead of deadlocking."""
        ordered = sorted(items, key=lambda agent: agent.id)
        fresh = [_to_row(agent) for agent in ordered if agent.revision == 0]
        stale: list[str] = []
        if fresh:
            statement = _insert_new[self._connection.dialect.name]
            inserted = set((await self._connection.execute(statement, fresh)).scalars())
            stale.extend(row["id"] for row in fresh if row["id"] not in inserted)
        for agent in ordered:
            if agent.revision == 0:
                continue
            row = _to_row(agent)
            del row["id"]
            result = await self._connection.execute(
                _update_whole, {**row, "b_id": agent.id, "b_revision": agent.revision}
            )
            if result.rowcount != 1:
                stale.append(agent.id)
        return stale

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
                    agent.changed_at,
                )
                for agent in items
            ),
        )
