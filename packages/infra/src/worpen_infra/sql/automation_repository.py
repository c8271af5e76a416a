"""Automation's repositories on SQLAlchemy Core: rules, runs, the storm protection of each (rule, target)
and the named positions of the engine. Runs keep their context, plan, applied actions and logs as JSON."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect, Insert, Row, Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

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
from worpen_core.events.model import JsonValue
from worpen_core.shared.errors import Conflict
from worpen_infra.sql.dialects import upsert
from worpen_infra.sql.tables import (
    CLAIMED,
    automation_progress,
    automation_rules,
    automation_runs,
    automation_targets,
)

_STORM = tuple(field.name for field in dataclasses.fields(StormPolicy))


def _upsert(dialect: Dialect, table: Table, key: list[str], values: dict[str, Any]) -> Insert:
    """INSERT ... ON CONFLICT (key) DO UPDATE, in the dialect's own construct (both spell it alike)."""
    statement = upsert(dialect, table).values(values)
    replaced = {name: statement.excluded[name] for name in values if name not in key}
    return statement.on_conflict_do_update(index_elements=key, set_=replaced)


def _rule_to_row(rule: AutomationRule) -> dict[str, Any]:
    """The rule's fields, its storm policy spread into one column each."""
    row = {
        field.name: getattr(rule, field.name) for field in dataclasses.fields(rule) if field.name != "storm"
    }
    return {**row, "trigger": rule.trigger.value, **dataclasses.asdict(rule.storm)}


def _rule_from_row(row: Row[Any]) -> AutomationRule:
    values = dict(row._mapping)
    storm = StormPolicy(**{name: values.pop(name) for name in _STORM})
    return AutomationRule(**{**values, "trigger": Trigger(values["trigger"]), "storm": storm})


def _action_to_json(action: Action) -> dict[str, JsonValue]:
    return {"type": action.type.value, "target": action.target, "params": action.params}


def _action_from_json(value: Any) -> Action:
    return Action(ActionType(value["type"]), value["target"], dict(value["params"]))


def _run_to_row(run: AutomationRun) -> dict[str, Any]:
    return {
        **{field.name: getattr(run, field.name) for field in dataclasses.fields(run)},
        "status": run.status.value,
        "plan": [_action_to_json(action) for action in run.plan],
        "applied": [
            {"action": _action_to_json(done.action), "ok": done.ok, "detail": done.detail}
            for done in run.applied
        ],
        "logs": [{"level": log.level.value, "message": log.message} for log in run.logs],
    }


def _run_from_row(row: Row[Any]) -> AutomationRun:
    return AutomationRun(
        **{
            **row._mapping,
            "status": RunStatus(row.status),
            "context": dict(row.context),
            "plan": tuple(_action_from_json(action) for action in row.plan),
            "applied": tuple(
                AppliedAction(_action_from_json(done["action"]), done["ok"], done["detail"])
                for done in row.applied
            ),
            "logs": tuple(ScriptLog(LogLevel(log["level"]), log["message"]) for log in row.logs),
        }
    )


def _state_to_row(state: TargetState) -> dict[str, Any]:
    """Attempts as RFC 3339 UTC times, the JSON column's only way to hold datetimes."""
    return {**dataclasses.asdict(state), "attempts": [at.isoformat() for at in state.attempts]}


def _state_from_row(row: Row[Any]) -> TargetState:
    attempts = [datetime.fromisoformat(at) for at in row.attempts]
    return TargetState(**{**row._mapping, "attempts": attempts})


class SqlAlchemyRuleRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def _check_name_free(self, rule: AutomationRule) -> None:
        """The unique index would refuse the name too, but its error names no rule: this one does."""
        taken = select(automation_rules.c.id).where(
            automation_rules.c.name == rule.name, automation_rules.c.id != rule.id
        )
        if (await self._connection.execute(taken)).first() is not None:
            raise Conflict(f"a rule named {rule.name!r} already exists")

    async def add(self, rule: AutomationRule) -> None:
        await self._check_name_free(rule)
        await self._connection.execute(insert(automation_rules).values(_rule_to_row(rule)))

    async def update(self, rule: AutomationRule) -> None:
        await self._check_name_free(rule)
        await self._connection.execute(
            update(automation_rules).where(automation_rules.c.id == rule.id).values(_rule_to_row(rule))
        )

    async def get(self, rule_id: str) -> AutomationRule | None:
        query = select(automation_rules).where(automation_rules.c.id == rule_id)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _rule_from_row(row)

    async def list_all(self) -> list[AutomationRule]:
        query = select(automation_rules).order_by(automation_rules.c.name)
        return [_rule_from_row(row) for row in await self._connection.execute(query)]

    async def delete(self, rule_id: str) -> bool:
        result = await self._connection.execute(
            delete(automation_rules).where(automation_rules.c.id == rule_id)
        )
        return bool(result.rowcount)

    async def mark_run(self, rule_id: str, at: datetime) -> None:
        await self._connection.execute(
            update(automation_rules).where(automation_rules.c.id == rule_id).values(last_run_at=at)
        )


class SqlAlchemyRunRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, run: AutomationRun) -> bool:
        """ON CONFLICT DO NOTHING on the claim's unique index: a second claim is not an error that would
        abort the transaction (PostgreSQL), and one racing an uncommitted first waits for it to commit."""
        if run.claim is None:
            await self._connection.execute(insert(automation_runs).values(_run_to_row(run)))
            return True
        inserted = await self._connection.execute(
            upsert(self._connection.dialect, automation_runs)
            .values(_run_to_row(run))
            .on_conflict_do_nothing(index_elements=["rule_id", "event_id", "claim"], index_where=CLAIMED)
        )
        return bool(inserted.rowcount)

    async def update(self, run: AutomationRun) -> None:
        await self._connection.execute(
            update(automation_runs).where(automation_runs.c.id == run.id).values(_run_to_row(run))
        )

    async def get(self, run_id: str) -> AutomationRun | None:
        row = (
            await self._connection.execute(select(automation_runs).where(automation_runs.c.id == run_id))
        ).first()
        return None if row is None else _run_from_row(row)

    async def query(self, query: RunQuery) -> list[AutomationRun]:
        statement = (
            select(automation_runs)
            .order_by(automation_runs.c.started_at.desc(), automation_runs.c.id.desc())
            .limit(query.limit)
        )
        if query.rule_id is not None:
            statement = statement.where(automation_runs.c.rule_id == query.rule_id)
        if query.status is not None:
            statement = statement.where(automation_runs.c.status == query.status.value)
        return [_run_from_row(row) for row in await self._connection.execute(statement)]

    async def exists_for_event(self, rule_id: str, event_id: int) -> bool:
        query = select(automation_runs.c.id).where(
            automation_runs.c.rule_id == rule_id, automation_runs.c.event_id == event_id
        )
        return (await self._connection.execute(query.limit(1))).first() is not None

    async def newest_event_id(self) -> int | None:
        newest: int | None = (
            await self._connection.execute(select(func.max(automation_runs.c.event_id)))
        ).scalar_one()
        return newest

    async def running(self) -> list[AutomationRun]:
        query = (
            select(automation_runs)
            .where(automation_runs.c.status == RunStatus.RUNNING.value)
            .order_by(automation_runs.c.started_at, automation_runs.c.id)
        )
        return [_run_from_row(row) for row in await self._connection.execute(query)]


class SqlAlchemyTargetStateRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, rule_id: str, target: str) -> TargetState | None:
        query = select(automation_targets).where(
            automation_targets.c.rule_id == rule_id, automation_targets.c.target == target
        )
        row = (await self._connection.execute(query)).first()
        return None if row is None else _state_from_row(row)

    async def save(self, state: TargetState) -> None:
        await self._connection.execute(
            _upsert(self._connection.dialect, automation_targets, ["rule_id", "target"], _state_to_row(state))
        )

    async def due(self, now: datetime, limit: int) -> list[TargetState]:
        pending = automation_targets.c.pending_due_at
        query = (
            select(automation_targets)
            .where(pending.is_not(None), pending <= now)
            .order_by(pending, automation_targets.c.rule_id, automation_targets.c.target)
            .limit(limit)
        )
        return [_state_from_row(row) for row in await self._connection.execute(query)]

    async def delete_rule(self, rule_id: str) -> None:
        await self._connection.execute(
            delete(automation_targets).where(automation_targets.c.rule_id == rule_id)
        )


class SqlAlchemyProgressRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, name: str) -> int | None:
        query = select(automation_progress.c.position).where(automation_progress.c.name == name)
        return (await self._connection.execute(query)).scalar_one_or_none()

    async def set(self, name: str, position: int) -> None:
        await self._connection.execute(
            _upsert(
                self._connection.dialect, automation_progress, ["name"], {"name": name, "position": position}
            )
        )

    async def advance(self, name: str, expected: int | None, position: int) -> bool:
        """One statement, so two replicas claiming the same slot cannot both succeed: an UPDATE that
        matches only the expected position (the second waits for the first's row lock, then finds it
        changed), or an INSERT that does nothing when the row exists."""
        if expected is None:
            inserted = await self._connection.execute(
                upsert(self._connection.dialect, automation_progress)
                .values(name=name, position=position)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            return bool(inserted.rowcount)
        updated = await self._connection.execute(
            update(automation_progress)
            .where(automation_progress.c.name == name, automation_progress.c.position == expected)
            .values(position=position)
        )
        return bool(updated.rowcount)
