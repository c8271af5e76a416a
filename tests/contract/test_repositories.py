"""One contract for the persistence ports, run against the fakes and against SQLite (a real file)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from worpen_api.bootstrap import StorageFactory
from worpen_core.access.model import ApiKey, Role
from worpen_core.fleet.events import Metric
from worpen_core.fleet.model import Agent, Healing, TelemetrySample
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import Conflict, Unavailable
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


READINGS = Readings(cpu=12.5, ram=40.0, disk=71.5, net_rx_bytes=10**12, net_tx_bytes=5, uptime_seconds=3600)


def agent(agent_id: str = "bee-001", **changes: object) -> Agent:
    values: dict[str, object] = {
        "id": agent_id,
        "name": agent_id,
        "status": AgentStatus.ONLINE,
        "reported_status": AgentStatus.ONLINE,
        "readings": READINGS,
        "last_seen": T0,
        "registered_at": T0,
        "ip": "10.0.0.7",
        "os": "linux",
        "version": "1.2.3",
        "peers": ("bee-002", "bee-003"),
    }
    values.update(changes)
    return Agent(**values)  # type: ignore[arg-type]


def key(key_id: str = "k1", secret_hash: str = "a" * 64, **changes: object) -> ApiKey:
    values: dict[str, object] = {
        "id": key_id,
        "name": "ci",
        "role": Role.AGENT,
        "prefix": "wpn_abcdefgh",
        "secret_hash": secret_hash,
        "created_at": T0,
        "agent_ids": ("bee-001",),
        "expires_at": T0 + timedelta(days=30),
    }
    values.update(changes)
    return ApiKey(**values)  # type: ignore[arg-type]


async def test_saved_agents_come_back_whole(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.agents.save([agent(), agent("bee-000", ip=None, peers=())])
        await tx.commit()

    async with uow() as tx:
        assert await tx.agents.get("bee-001") == agent()
        assert [found.id for found in await tx.agents.list_all()] == ["bee-000", "bee-001"]
        assert await tx.agents.get("ghost") is None


async def test_save_updates_existing_agents(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.agents.save([agent()])
        await tx.commit()
    async with uow() as tx:
        await tx.agents.save(
            [agent(status=AgentStatus.CRITICAL, readings=Readings(99.0, 1.0), revision=1), agent("bee-002")]
        )
        await tx.commit()

    async with uow() as tx:
        stored = await tx.agents.get("bee-001")
        assert stored is not None
        assert (stored.status, stored.readings) == (AgentStatus.CRITICAL, Readings(99.0, 1.0))
        assert len(await tx.agents.list_all()) == 2


async def test_save_profiles_changes_what_agents_say_of_themselves_and_nothing_else(
    uow: StorageFactory,
) -> None:
    async with uow() as tx:
        await tx.agents.save([agent(status=AgentStatus.CRITICAL)])
        await tx.commit()

    said: dict[str, Any] = {
        "name": "edge",
        "ip": "10.0.0.8",
        "os": "alpine",
        "version": "2.0",
        "peers": ("bee-009",),
    }
    async with uow() as tx:
        await tx.agents.save_profiles(
            [agent(reported_status=AgentStatus.CRITICAL, readings=Readings(1.0, 2.0), **said)]
        )
        await tx.commit()

    async with uow() as tx:
        assert await tx.agents.get("bee-001") == agent(
            status=AgentStatus.CRITICAL, reported_status=AgentStatus.CRITICAL, **said
        )


async def test_a_save_is_refused_for_agents_another_writer_changed_first_and_the_others_are_written(
    uow: StorageFactory,
) -> None:
    async with uow() as tx:
        assert await tx.agents.save([agent(changed_at=T0), agent("bee-002")]) == []
        await tx.commit()
    async with uow() as tx:
        [read] = await tx.agents.get_many(["bee-001"])
        assert (read.revision, read.changed_at) == (1, T0)
        # a replica that read bee-001 at revision 1 saves first: the row moves on to revision 2
        assert await tx.agents.save([agent(status=AgentStatus.CRITICAL, revision=1)]) == []
        await tx.commit()

    async with uow() as tx:  # another replica, which had read it at revision 1 too, and registers bee-002
        stale = await tx.agents.save(
            [agent(status=AgentStatus.OFFLINE, revision=1), agent("bee-002"), agent("bee-003")]
        )
        await tx.commit()

    assert sorted(stale) == ["bee-001", "bee-002"]
    async with uow() as tx:
        stored = {found.id: found for found in await tx.agents.list_all()}
    assert (stored["bee-001"].status, stored["bee-001"].revision) == (AgentStatus.CRITICAL, 2)
    assert (stored["bee-002"].revision, stored["bee-003"].revision) == (1, 1)


async def test_agents_are_found_by_id_and_by_when_they_last_changed(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.agents.save(
            [
                agent("bee-001", changed_at=T0),
                agent("bee-002", changed_at=T0 + timedelta(seconds=5)),
                agent("bee-003", changed_at=T0 + timedelta(seconds=10)),
            ]
        )
        await tx.commit()

    async with uow() as tx:
        assert sorted(found.id for found in await tx.agents.get_many(["bee-003", "ghost", "bee-001"])) == [
            "bee-001",
            "bee-003",
        ]
        assert await tx.agents.get_many([]) == []
        changed = await tx.agents.changed_since(T0 + timedelta(seconds=5))
        assert sorted(found.id for found in changed) == ["bee-002", "bee-003"]

    async with uow() as tx:  # a profile saved moves the row on: other replicas take it in
        await tx.agents.save_profiles([agent("bee-001", name="edge", changed_at=T0 + timedelta(seconds=20))])
        await tx.commit()
    async with uow() as tx:
        [profiled] = await tx.agents.changed_since(T0 + timedelta(seconds=20))
    assert (profiled.id, profiled.name, profiled.revision) == ("bee-001", "edge", 2)


async def test_thousands_of_agents_are_read_back_at_once(uow: StorageFactory) -> None:
    ids = [f"bee-{number:05}" for number in range(2500)]
    async with uow() as tx:
        await tx.agents.save([agent(agent_id) for agent_id in ids])
        await tx.commit()

    async with uow() as tx:
        assert sorted(found.id for found in await tx.agents.get_many(ids)) == ids


async def test_the_alerts_raised_on_an_agent_are_stored_with_it(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.agents.save([agent(alerts=frozenset({Metric.DISK, Metric.CPU})), agent("bee-002")])
        await tx.commit()

    async with uow() as tx:
        stored = {found.id: found.alerts for found in await tx.agents.list_all()}
    assert stored == {"bee-001": {Metric.CPU, Metric.DISK}, "bee-002": frozenset()}


async def test_the_remediations_running_on_an_agent_are_stored_with_it(uow: StorageFactory) -> None:
    """Every replica keeps an agent HEALING while a remediation runs on its node: the reasons (oldest
    first) and the status underneath come back as saved, and none once the last one ended."""
    healing = Healing(("rule oom: restart web-1", "rule disk: prune images"), AgentStatus.CRITICAL)
    async with uow() as tx:
        await tx.agents.save([agent(status=AgentStatus.HEALING, healing=healing), agent("bee-002")])
        await tx.commit()

    async with uow() as tx:
        stored = {found.id: found.healing for found in await tx.agents.list_all()}
        assert stored == {"bee-001": healing, "bee-002": None}
        ended = agent(status=AgentStatus.CRITICAL, revision=1)
        reboot = Healing(("reboot",), AgentStatus.ONLINE)
        begun = agent("bee-002", status=AgentStatus.HEALING, healing=reboot, revision=1)
        assert await tx.agents.save([ended, begun]) == []
        await tx.commit()

    async with uow() as tx:
        read = {found.id: found for found in await tx.agents.get_many(["bee-001", "bee-002"])}
    assert (read["bee-001"].status, read["bee-001"].healing) == (AgentStatus.CRITICAL, None)
    assert read["bee-002"].healing == reboot


async def test_the_newest_sample_of_each_agent_written_since_a_number_is_found(uow: StorageFactory) -> None:
    def at(agent_id: str, seconds: int, cpu: float) -> TelemetrySample:
        return TelemetrySample(agent_id, T0 + timedelta(seconds=seconds), Readings(cpu, 50.0))

    async with uow() as tx:
        assert await tx.agents.newest_samples(None) == ([], 0)
        await tx.samples.add([at("bee-001", 1, 1.0), at("bee-002", 1, 2.0)])
        await tx.commit()
    async with uow() as tx:
        _, seen = await tx.agents.newest_samples(None)
        await tx.samples.add([at("bee-001", 2, 3.0), at("bee-001", 3, 4.0), at("bee-003", 3, 5.0)])
        await tx.commit()

    async with uow() as tx:
        newest, last = await tx.agents.newest_samples(seen)
        assert sorted(newest, key=lambda sample: sample.agent_id) == [
            at("bee-001", 3, 4.0),
            at("bee-003", 3, 5.0),
        ]
        assert last > seen
        assert await tx.agents.newest_samples(last) == ([], last)


async def test_leaving_without_commit_rolls_back(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.agents.save([agent()])
        await tx.api_keys.add(key())

    async with uow() as tx:
        assert await tx.agents.list_all() == []
        assert await tx.api_keys.count() == 0


async def test_samples_are_added_in_batches_and_read_newest_first(uow: StorageFactory) -> None:
    samples = [
        TelemetrySample("bee-001", T0 + timedelta(seconds=i), Readings(float(i), 50.0, None, i, None, 7))
        for i in range(5)
    ]
    async with uow() as tx:
        await tx.samples.add([*samples, TelemetrySample("other", T0, Readings(1.0, 1.0))])
        await tx.commit()

    async with uow() as tx:
        assert await tx.samples.for_agent("bee-001", 3) == samples[::-1][:3]


async def test_agents_are_read_back_with_the_readings_of_their_newest_sample(uow: StorageFactory) -> None:
    def at(seconds: int, cpu: float) -> TelemetrySample:
        return TelemetrySample(
            "bee-001", T0 + timedelta(seconds=seconds), Readings(cpu, 60.0, 80.5, 9, 8, 4000 + seconds)
        )

    async with uow() as tx:
        await tx.agents.save([agent(), agent("bee-000")])
        await tx.samples.add([at(-5, 1.0), at(20, 3.0), at(10, 2.0), at(20, 4.0)])  # 4.0: the last of a tie
        await tx.commit()

    async with uow() as tx:
        caught_up = agent(
            readings=Readings(4.0, 60.0, 80.5, 9, 8, 4020), last_seen=T0 + timedelta(seconds=20)
        )
        assert await tx.agents.get("bee-001") == caught_up
        assert await tx.agents.list_all() == [agent("bee-000"), caught_up]

    async with uow() as tx:
        await tx.agents.save(
            [agent(readings=Readings(99.0, 1.0), last_seen=T0 + timedelta(seconds=30), revision=1)]
        )
        await tx.commit()
    async with uow() as tx:
        stored = await tx.agents.get("bee-001")
        assert stored is not None
        assert (stored.readings, stored.last_seen) == (Readings(99.0, 1.0), T0 + timedelta(seconds=30))


async def test_api_keys_round_trip_and_are_found_by_hash(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.api_keys.add(key())
        await tx.api_keys.add(key("k2", "b" * 64, role=Role.VIEWER, agent_ids=(), expires_at=None))
        await tx.commit()

    async with uow() as tx:
        assert await tx.api_keys.get("k1") == key()
        assert await tx.api_keys.by_hash("b" * 64) == key(
            "k2", "b" * 64, role=Role.VIEWER, agent_ids=(), expires_at=None
        )
        assert await tx.api_keys.by_hash("c" * 64) is None
        assert [found.id for found in await tx.api_keys.list_all()] == ["k1", "k2"]
        assert await tx.api_keys.count() == 2

    async with uow() as tx:
        await tx.api_keys.update(key(revoked_at=T0 + timedelta(hours=1)))
        await tx.commit()
    async with uow() as tx:
        stored = await tx.api_keys.get("k1")
        assert stored is not None
        assert stored.revoked_at == T0 + timedelta(hours=1)


async def test_a_duplicate_secret_hash_is_a_conflict(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.api_keys.add(key())
        await tx.commit()

    async def add_twin() -> None:
        async with uow() as tx:
            await tx.api_keys.add(key("k2"))
            await tx.commit()

    with pytest.raises(Conflict):
        await add_twin()


async def test_a_locked_database_is_unavailable_and_named(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", busy_timeout_ms=50)
    await upgrade_database(engine)
    uow = SqlAlchemyUnitOfWorkFactory(engine)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")

    async def register() -> None:
        async with uow() as tx:
            await tx.agents.save([agent()])
            await tx.commit()

    try:
        with pytest.raises(Unavailable) as caught:
            await register()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert caught.value.dependency == "database"
    assert "locked" in caught.value.detail
    await register()
    await engine.dispose()
