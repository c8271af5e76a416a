"""Automation's storage ports (rules, runs, target states, progress), against the fake and SQLite."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from worpen_api.bootstrap import StorageFactory
from worpen_core.automation.model import (
    AppliedAction,
    AutomationRule,
    AutomationRun,
    RunQuery,
    RunStatus,
    StormPolicy,
    TargetState,
    Trigger,
)
from worpen_core.automation.plan import Action, ActionType, LogLevel, ScriptLog
from worpen_core.shared.errors import Conflict

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def rule(rule_id: str = "r1", name: str = "restart web", **changes: object) -> AutomationRule:
    values: dict[str, object] = {
        "id": rule_id,
        "name": name,
        "trigger": Trigger.CONTAINER_DIED,
        "target_service": "saleor-*",
        "script": "docker.restart(event.container)",
        "active": True,
        "schedule": None,
        "storm": StormPolicy(
            cooldown_seconds=5,
            max_attempts=3,
            attempt_window_seconds=600,
            backoff_seconds=7,
            max_backoff_seconds=70,
            reset_after_seconds=900,
        ),
        "created_at": T0,
        "updated_at": T0 + timedelta(minutes=1),
        "updated_by": "ops",
        "updated_by_key_id": "k1",
    }
    values.update(changes)
    return AutomationRule(**values)  # type: ignore[arg-type]


RESTART = Action(ActionType.DOCKER_RESTART, "node-a/web", {"timeout": 10, "why": ["died", None, 1.5]})
NOTIFY = Action(ActionType.NOTIFY_SLACK, "ops", {})


def run(run_id: str = "u1", seconds: int = 0, **changes: object) -> AutomationRun:
    values: dict[str, object] = {
        "id": run_id,
        "rule_id": "r1",
        "rule_name": "restart web",
        "trigger": "CONTAINER_DIED",
        "event_id": 42,
        "target": "web",
        "node": "node-a",
        "status": RunStatus.SUCCEEDED,
        "matched": True,
        "reason": "exit code 137",
        "context": {"event": {"container": "web", "exitCode": 137, "labels": {"a": "b"}}, "n": None},
        "plan": (RESTART, NOTIFY),
        "applied": (AppliedAction(RESTART, True, "restarted"), AppliedAction(NOTIFY, False, "HTTP 500")),
        "logs": (ScriptLog(LogLevel.INFO, "restarting"), ScriptLog(LogLevel.WARN, "twice today")),
        "actor": "automation",
        "incident_id": "i1",
        "started_at": T0 + timedelta(seconds=seconds),
        "finished_at": T0 + timedelta(seconds=seconds, milliseconds=250),
        "duration_ms": 250.0,
    }
    values.update(changes)
    return AutomationRun(**values)  # type: ignore[arg-type]


def bare_run(run_id: str, seconds: int = 0, **changes: object) -> AutomationRun:
    """A run with every optional field empty: what a MANUAL run looks like while it is RUNNING."""
    values: dict[str, object] = {
        "trigger": "MANUAL",
        "event_id": None,
        "target": None,
        "node": None,
        "status": RunStatus.RUNNING,
        "matched": False,
        "reason": None,
        "context": {},
        "plan": (),
        "applied": (),
        "logs": (),
        "actor": "ops",
        "incident_id": None,
        "finished_at": None,
        "duration_ms": None,
    }
    values.update(changes)
    return run(run_id, seconds, **values)


def state(rule_id: str = "r1", target: str = "web", **changes: object) -> TargetState:
    values: dict[str, object] = {
        "attempts": [T0, T0 + timedelta(seconds=30, microseconds=5)],
        "last_run_at": T0 + timedelta(seconds=30),
        "last_event_at": T0 + timedelta(seconds=40),
        "next_allowed_at": T0 + timedelta(seconds=50),
        "gave_up_at": T0 + timedelta(seconds=60),
        "pending_event_id": 7,
        "pending_due_at": T0 + timedelta(seconds=70),
        "incident_id": "i1",
    }
    values.update(changes)
    return TargetState(rule_id, target, **values)  # type: ignore[arg-type]


async def test_rules_come_back_whole_ordered_by_name(uow: StorageFactory) -> None:
    scheduled = rule(
        "r2",
        "a nightly prune",
        trigger=Trigger.SCHEDULE,
        schedule="0 3 * * *",
        active=False,
        storm=StormPolicy(),
        last_run_at=T0 + timedelta(days=1),
    )
    async with uow() as tx:
        await tx.rules.add(rule())
        await tx.rules.add(scheduled)
        await tx.commit()

    async with uow() as tx:
        assert await tx.rules.get("r1") == rule()
        assert await tx.rules.get("r2") == scheduled
        assert await tx.rules.get("nope") is None
        assert await tx.rules.list_all() == [scheduled, rule()]
        stored = await tx.rules.get("r2")
        assert stored is not None
        assert stored.last_run_at is not None
        assert stored.last_run_at.tzinfo is not None


async def test_a_rule_is_updated_marked_and_deleted(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.rules.add(rule())
        await tx.commit()

    changed = rule(
        name="restart api",
        trigger=Trigger.MANUAL,
        script="log('x')",
        storm=StormPolicy(cooldown_seconds=0, max_attempts=1),
        updated_at=T0 + timedelta(hours=1),
        updated_by="lead",
        updated_by_key_id="k2",
    )
    async with uow() as tx:
        await tx.rules.update(changed)
        await tx.rules.mark_run("r1", T0 + timedelta(hours=2))
        await tx.rules.mark_run("gone", T0)
        await tx.commit()
    async with uow() as tx:
        assert await tx.rules.get("r1") == replace(changed, last_run_at=T0 + timedelta(hours=2))
        assert await tx.rules.list_all() == [replace(changed, last_run_at=T0 + timedelta(hours=2))]

    async with uow() as tx:
        assert await tx.rules.delete("r1") is True
        assert await tx.rules.delete("r1") is False
        await tx.commit()
    async with uow() as tx:
        assert await tx.rules.get("r1") is None
        assert await tx.rules.list_all() == []


async def test_a_rule_name_is_taken_once(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.rules.add(rule())
        await tx.rules.add(rule("r2", "other"))
        await tx.commit()

    async def add_twin() -> None:
        async with uow() as tx:
            await tx.rules.add(rule("r3"))
            await tx.commit()

    async def rename_to_taken() -> None:
        async with uow() as tx:
            await tx.rules.update(rule("r2"))
            await tx.commit()

    with pytest.raises(Conflict, match="restart web"):
        await add_twin()
    with pytest.raises(Conflict, match="restart web"):
        await rename_to_taken()
    async with uow() as tx:
        assert [stored.name for stored in await tx.rules.list_all()] == ["other", "restart web"]
        await tx.rules.update(rule(updated_by="self"))  # its own name is no conflict
        await tx.commit()


async def test_runs_come_back_whole_including_empty_ones(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.runs.add(run())
        await tx.runs.add(bare_run("u2", 5))
        await tx.commit()

    async with uow() as tx:
        assert await tx.runs.get("u1") == run()
        assert await tx.runs.get("u2") == bare_run("u2", 5)
        assert await tx.runs.get("nope") is None
        stored = await tx.runs.get("u1")
        assert stored is not None
        assert stored.finished_at is not None
        assert stored.finished_at.tzinfo is not None
        assert stored.applied[1].action.type is ActionType.NOTIFY_SLACK
        assert stored.logs[1].level is LogLevel.WARN


async def test_a_running_run_is_finished_by_an_update(uow: StorageFactory) -> None:
    started = bare_run("u1", trigger="CONTAINER_DIED", event_id=9, plan=(RESTART,))
    async with uow() as tx:
        await tx.runs.add(started)
        await tx.runs.add(bare_run("u2", 3))
        await tx.runs.add(run("u3", 1))
        await tx.commit()
    async with uow() as tx:
        assert [found.id for found in await tx.runs.running()] == ["u1", "u2"]

    finished = started.finish(
        RunStatus.FAILED,
        T0 + timedelta(seconds=2),
        reason="no such container",
        applied=(AppliedAction(RESTART, False, "no such container"),),
        incident_id="i9",
    )
    async with uow() as tx:
        await tx.runs.update(finished)
        await tx.commit()
    async with uow() as tx:
        assert await tx.runs.get("u1") == finished
        assert [found.id for found in await tx.runs.running()] == ["u2"]


async def test_runs_are_queried_newest_first_by_rule_and_status(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.runs.add(run("a", 10))
        await tx.runs.add(run("b", 30, status=RunStatus.FAILED))
        await tx.runs.add(run("c", 20, rule_id="r2", status=RunStatus.FAILED))
        await tx.runs.add(run("d", 30))  # the same start as b: the larger id first
        await tx.runs.add(run("e", 5, status=RunStatus.DEFERRED))
        await tx.commit()

    async with uow() as tx:
        assert [found.id for found in await tx.runs.query(RunQuery())] == ["d", "b", "c", "a", "e"]
        assert [found.id for found in await tx.runs.query(RunQuery(limit=2))] == ["d", "b"]
        assert [found.id for found in await tx.runs.query(RunQuery(rule_id="r1"))] == ["d", "b", "a", "e"]
        assert [found.id for found in await tx.runs.query(RunQuery(status=RunStatus.FAILED))] == ["b", "c"]
        failed_r1 = RunQuery(rule_id="r1", status=RunStatus.FAILED)
        assert [found.id for found in await tx.runs.query(failed_r1)] == ["b"]
        assert await tx.runs.query(RunQuery(rule_id="r9")) == []


async def test_a_rule_knows_the_events_it_handled(uow: StorageFactory) -> None:
    async with uow() as tx:
        assert await tx.runs.newest_event_id() is None
        await tx.runs.add(run("a", event_id=42))
        await tx.runs.add(bare_run("b", event_id=None))
        await tx.commit()

    async with uow() as tx:
        assert await tx.runs.exists_for_event("r1", 42) is True
        assert await tx.runs.exists_for_event("r1", 43) is False
        assert await tx.runs.exists_for_event("r2", 42) is False
        assert await tx.runs.newest_event_id() == 42


async def test_target_states_are_saved_over_and_come_back_whole(uow: StorageFactory) -> None:
    empty = TargetState("r1", "db")
    async with uow() as tx:
        await tx.targets.save(state())
        await tx.targets.save(empty)
        await tx.commit()

    async with uow() as tx:
        assert await tx.targets.get("r1", "web") == state()
        assert await tx.targets.get("r1", "db") == empty
        assert await tx.targets.get("r2", "web") is None
        stored = await tx.targets.get("r1", "web")
        assert stored is not None
        assert all(at.tzinfo is not None for at in stored.attempts)

    quiet = state(attempts=[], gave_up_at=None, pending_event_id=None, pending_due_at=None, incident_id=None)
    async with uow() as tx:
        await tx.targets.save(quiet)
        await tx.commit()
    async with uow() as tx:
        assert await tx.targets.get("r1", "web") == quiet


async def test_a_state_changed_after_saving_is_not_changed_in_storage(uow: StorageFactory) -> None:
    saved = state()
    async with uow() as tx:
        await tx.targets.save(saved)
        saved.attempts.append(T0 + timedelta(hours=1))
        saved.gave_up_at = None
        await tx.commit()

    async with uow() as tx:
        assert await tx.targets.get("r1", "web") == state()


async def test_due_states_come_earliest_first_up_to_a_limit(uow: StorageFactory) -> None:
    def pending(rule_id: str, target: str, seconds: int | None) -> TargetState:
        due = None if seconds is None else T0 + timedelta(seconds=seconds)
        return TargetState(rule_id, target, pending_event_id=None if due is None else 1, pending_due_at=due)

    async with uow() as tx:
        for saved in (
            pending("r1", "late", 90),
            pending("r2", "b", 10),
            pending("r1", "none", None),
            pending("r1", "c", 20),
            pending("r2", "a", 10),
            pending("r1", "now", 60),
        ):
            await tx.targets.save(saved)
        await tx.commit()

    def keys(states: list[TargetState]) -> list[tuple[str, str]]:
        return [(found.rule_id, found.target) for found in states]

    async with uow() as tx:
        now = T0 + timedelta(seconds=60)
        assert keys(await tx.targets.due(now, 10)) == [("r2", "a"), ("r2", "b"), ("r1", "c"), ("r1", "now")]
        assert keys(await tx.targets.due(now, 2)) == [("r2", "a"), ("r2", "b")]
        assert await tx.targets.due(T0, 10) == []


async def test_the_states_of_a_deleted_rule_are_forgotten(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.targets.save(state("r1", "web"))
        await tx.targets.save(state("r1", "db"))
        await tx.targets.save(state("r2", "web"))
        await tx.commit()

    async with uow() as tx:
        await tx.targets.delete_rule("r1")
        await tx.commit()
    async with uow() as tx:
        assert await tx.targets.get("r1", "web") is None
        assert await tx.targets.get("r1", "db") is None
        assert await tx.targets.get("r2", "web") == state("r2", "web")


async def test_progress_is_read_and_moved_by_name(uow: StorageFactory) -> None:
    async with uow() as tx:
        assert await tx.progress.get("journal") is None
        await tx.progress.set("journal", 41)
        await tx.progress.set("cron:r2", 1_798_000_000)
        await tx.commit()

    async with uow() as tx:
        await tx.progress.set("journal", 57)
        await tx.commit()
    async with uow() as tx:
        assert await tx.progress.get("journal") == 57
        assert await tx.progress.get("cron:r2") == 1_798_000_000


async def test_nothing_is_stored_without_a_commit(uow: StorageFactory) -> None:
    async with uow() as tx:
        await tx.rules.add(rule("kept", "kept"))
        await tx.progress.set("journal", 1)
        await tx.commit()

    async with uow() as tx:
        await tx.rules.add(rule())
        await tx.rules.delete("kept")
        await tx.runs.add(run())
        await tx.targets.save(state())
        await tx.progress.set("journal", 2)
        assert await tx.rules.get("r1") == rule()  # a transaction sees its own writes

    async with uow() as tx:
        assert [stored.id for stored in await tx.rules.list_all()] == ["kept"]
        assert await tx.runs.get("u1") is None
        assert await tx.runs.query(RunQuery()) == []
        assert await tx.targets.get("r1", "web") is None
        assert await tx.progress.get("journal") == 1
