"""A rule runs once per event, held by the store: of two runs of one rule claiming one event (two leader
terms that both took it), the store records one; a deferred plan's run when its wait ends is a claim of
its own. Against the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from tests.contract.test_automation_store import T0, bare_run, run
from tests.postgres_support import create_database
from worpen_api.bootstrap import StorageFactory
from worpen_core.automation.model import AutomationRun, RunQuery, RunStatus
from worpen_infra.sql.automation_repository import _run_to_row
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.tables import automation_runs
from worpen_infra.sql.unit_of_work import SqlAlchemyUnitOfWorkFactory

DUE = T0 + timedelta(seconds=30)


async def add(uow: StorageFactory, claimed: AutomationRun) -> bool:
    async with uow() as tx:
        stored = await tx.runs.add(claimed)
        await tx.commit()
    return stored


async def stored_ids(uow: StorageFactory) -> list[str]:
    async with uow() as tx:
        return sorted(found.id for found in await tx.runs.query(RunQuery()))


async def test_a_second_run_of_one_rule_for_one_event_is_refused(uow: StorageFactory) -> None:
    assert await add(uow, run("first", event_id=42, claim="event", status=RunStatus.RUNNING))
    assert not await add(uow, run("second", event_id=42, claim="event", status=RunStatus.RUNNING))
    assert not await add(uow, run("third", event_id=42, claim="event", status=RunStatus.NO_ACTION))
    assert await stored_ids(uow) == ["first"]


async def test_other_rules_other_events_and_runs_no_event_fired_are_not_claims_of_it(
    uow: StorageFactory,
) -> None:
    assert await add(uow, run("a", event_id=42, claim="event"))
    assert await add(uow, run("b", event_id=43, claim="event"))
    assert await add(uow, run("c", rule_id="r2", event_id=42, claim="event"))
    assert await add(uow, bare_run("manual-1"))
    assert await add(uow, bare_run("manual-2"))
    assert await add(uow, run("before-claims-1", event_id=42))
    assert await add(uow, run("before-claims-2", event_id=42))
    assert await stored_ids(uow) == [
        "a",
        "b",
        "before-claims-1",
        "before-claims-2",
        "c",
        "manual-1",
        "manual-2",
    ]


async def test_a_deferred_plan_runs_once_for_each_time_it_was_due(uow: StorageFactory) -> None:
    """The event's run is DEFERRED; its plan runs when the wait ends (once, though two terms fire it), and
    a plan deferred again at that run is due, and runs, at another time."""
    later = DUE + timedelta(seconds=60)
    assert await add(uow, run("deferred", event_id=42, claim="event", status=RunStatus.DEFERRED))
    assert await add(
        uow, run("again", event_id=42, claim=f"deferred {DUE.isoformat()}", status=RunStatus.DEFERRED)
    )
    assert not await add(uow, run("twice", event_id=42, claim=f"deferred {DUE.isoformat()}"))
    assert await add(uow, run("ran", event_id=42, claim=f"deferred {later.isoformat()}"))
    assert not await add(uow, run("ran-twice", event_id=42, claim=f"deferred {later.isoformat()}"))
    assert await stored_ids(uow) == ["again", "deferred", "ran"]


async def test_of_concurrent_claims_of_one_event_one_is_stored(uow: StorageFactory) -> None:
    claims = [run(f"term-{i}", event_id=42, claim="event", status=RunStatus.RUNNING) for i in range(8)]
    stored = await asyncio.gather(*(add(uow, claimed) for claimed in claims))
    assert stored.count(True) == 1
    winner = claims[stored.index(True)]
    assert await stored_ids(uow) == [winner.id]


async def test_a_refused_claim_leaves_the_transaction_usable(uow: StorageFactory) -> None:
    """PostgreSQL aborts a transaction at a unique violation: the refusal must not be one."""
    assert await add(uow, run("first", event_id=42, claim="event"))
    async with uow() as tx:
        assert not await tx.runs.add(run("second", event_id=42, claim="event"))
        assert await tx.runs.add(run("other", event_id=43, claim="event"))
        await tx.rules.mark_run("r1", T0)
        await tx.commit()
    assert await stored_ids(uow) == ["first", "other"]


async def test_a_claim_comes_back_with_its_run(uow: StorageFactory) -> None:
    claimed = run("a", event_id=42, claim=f"deferred {DUE.isoformat()}")
    await add(uow, claimed)
    async with uow() as tx:
        assert await tx.runs.get("a") == claimed


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_runs_recorded_twice_before_claims_existed_do_not_stop_the_upgrade(
    backend: str, tmp_path: Path
) -> None:
    """An installation may hold two runs of one rule for one event (a deferred plan's run beside its
    event's, or a handover race): migration 0014 keeps them as they are, and claims hold from then on."""
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'claims.db'}"
        if backend == "sqlite"
        else await create_database("claims")
    )
    engine = create_engine(url)
    await upgrade_database(engine, "0013")
    before = [
        _run_to_row(run(run_id, event_id=42, status=status))
        for run_id, status in (
            ("old-deferred", RunStatus.DEFERRED),
            ("old-1", RunStatus.SUCCEEDED),
            ("old-2", RunStatus.SUCCEEDED),
        )
    ]
    async with engine.begin() as connection:  # the columns of 0013: no claim
        await connection.execute(
            insert(automation_runs), [{k: v for k, v in row.items() if k != "claim"} for row in before]
        )
    await upgrade_database(engine)
    uow = SqlAlchemyUnitOfWorkFactory(engine)
    assert await stored_ids(uow) == ["old-1", "old-2", "old-deferred"]
    assert await add(uow, run("new", event_id=42, claim="event"))
    assert not await add(uow, run("new-again", event_id=42, claim="event"))
    await engine.dispose()
