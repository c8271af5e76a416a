"""Automation's repositories, in memory: what a transaction writes is staged, and reaches the tables that
every unit of work of one Store shares when it commits."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar
from weakref import WeakKeyDictionary

from tests.fakes.store import Store
from worpen_core.automation.model import AutomationRule, AutomationRun, RunQuery, RunStatus, TargetState
from worpen_core.shared.errors import Conflict

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Table(Generic[K, V]):
    """A committed table and one transaction's writes to it (None: a deleted row)."""

    def __init__(self, committed: dict[K, V]) -> None:
        self._committed = committed
        self._staged: dict[K, V | None] = {}

    def rows(self) -> dict[K, V]:
        merged: dict[K, V | None] = {**self._committed, **self._staged}
        return {key: value for key, value in merged.items() if value is not None}

    def get(self, key: K) -> V | None:
        return self.rows().get(key)

    def put(self, key: K, value: V) -> None:
        self._staged[key] = value

    def remove(self, key: K) -> bool:
        found = key in self.rows()
        self._staged[key] = None
        return found

    def commit(self) -> None:
        for key, value in self._staged.items():
            if value is None:
                self._committed.pop(key, None)
            else:
                self._committed[key] = value
        self.discard()

    def discard(self) -> None:
        self._staged.clear()


@dataclasses.dataclass
class _Tables:
    rules: dict[str, AutomationRule] = dataclasses.field(default_factory=dict)
    runs: dict[str, AutomationRun] = dataclasses.field(default_factory=dict)
    targets: dict[tuple[str, str], TargetState] = dataclasses.field(default_factory=dict)
    progress: dict[str, int] = dataclasses.field(default_factory=dict)


_tables: WeakKeyDictionary[Store, _Tables] = WeakKeyDictionary()
"""Automation's tables of each Store (kept beside it, as the Store has no fields of automation's)."""


class FakeRuleRepository:
    def __init__(self, table: _Table[str, AutomationRule]) -> None:
        self._table = table

    def _check_name_free(self, rule: AutomationRule) -> None:
        if any(other.name == rule.name and other.id != rule.id for other in self._table.rows().values()):
            raise Conflict(f"a rule named {rule.name!r} already exists")

    async def add(self, rule: AutomationRule) -> None:
        if self._table.get(rule.id) is not None:
            raise Conflict(f"rule {rule.id} exists")
        self._check_name_free(rule)
        self._table.put(rule.id, rule)

    async def update(self, rule: AutomationRule) -> None:
        self._check_name_free(rule)
        if self._table.get(rule.id) is not None:
            self._table.put(rule.id, rule)

    async def get(self, rule_id: str) -> AutomationRule | None:
        return self._table.get(rule_id)

    async def list_all(self) -> list[AutomationRule]:
        return sorted(self._table.rows().values(), key=lambda rule: rule.name)

    async def delete(self, rule_id: str) -> bool:
        return self._table.remove(rule_id)

    async def mark_run(self, rule_id: str, at: datetime) -> None:
        rule = self._table.get(rule_id)
        if rule is not None:
            self._table.put(rule_id, dataclasses.replace(rule, last_run_at=at))


def _newest_first(runs: list[AutomationRun]) -> list[AutomationRun]:
    return sorted(runs, key=lambda run: (run.started_at, run.id), reverse=True)


class FakeRunRepository:
    def __init__(self, table: _Table[str, AutomationRun]) -> None:
        self._table = table

    async def add(self, run: AutomationRun) -> bool:
        if self._table.get(run.id) is not None:
            raise Conflict(f"run {run.id} exists")
        if run.claim is not None and any(
            (other.rule_id, other.event_id, other.claim) == (run.rule_id, run.event_id, run.claim)
            for other in self._table.rows().values()
        ):
            return False
        self._table.put(run.id, copy.deepcopy(run))
        return True

    async def update(self, run: AutomationRun) -> None:
        if self._table.get(run.id) is not None:
            self._table.put(run.id, copy.deepcopy(run))

    async def get(self, run_id: str) -> AutomationRun | None:
        return copy.deepcopy(self._table.get(run_id))

    async def query(self, query: RunQuery) -> list[AutomationRun]:
        matching = [
            run
            for run in self._table.rows().values()
            if (query.rule_id is None or run.rule_id == query.rule_id)
            and (query.status is None or run.status is query.status)
        ]
        return copy.deepcopy(_newest_first(matching)[: query.limit])

    async def exists_for_event(self, rule_id: str, event_id: int) -> bool:
        return any(run.rule_id == rule_id and run.event_id == event_id for run in self._table.rows().values())

    async def newest_event_id(self) -> int | None:
        handled = (run.event_id for run in self._table.rows().values() if run.event_id is not None)
        return max(handled, default=None)

    async def running(self) -> list[AutomationRun]:
        running = [run for run in self._table.rows().values() if run.status is RunStatus.RUNNING]
        return copy.deepcopy(list(reversed(_newest_first(running))))


class FakeTargetStateRepository:
    """Keeps copies: a state changed after `save` is not changed in storage (it is mutable)."""

    def __init__(self, table: _Table[tuple[str, str], TargetState]) -> None:
        self._table = table

    async def get(self, rule_id: str, target: str) -> TargetState | None:
        return copy.deepcopy(self._table.get((rule_id, target)))

    async def save(self, state: TargetState) -> None:
        self._table.put((state.rule_id, state.target), copy.deepcopy(state))

    async def due(self, now: datetime, limit: int) -> list[TargetState]:
        due = [
            state
            for state in self._table.rows().values()
            if state.pending_due_at is not None and state.pending_due_at <= now
        ]
        due.sort(key=lambda state: (state.pending_due_at, state.rule_id, state.target))
        return copy.deepcopy(due[:limit])

    async def delete_rule(self, rule_id: str) -> None:
        for rule, target in list(self._table.rows()):
            if rule == rule_id:
                self._table.remove((rule, target))


class FakeProgressRepository:
    def __init__(self, table: _Table[str, int]) -> None:
        self._table = table

    async def get(self, name: str) -> int | None:
        return self._table.get(name)

    async def set(self, name: str, position: int) -> None:
        self._table.put(name, position)

    async def advance(self, name: str, expected: int | None, position: int) -> bool:
        if self._table.get(name) != expected:
            return False
        self._table.put(name, position)
        return True


class FakeAutomation:
    """Automation's repositories for one unit of work."""

    def __init__(self, store: Store) -> None:
        tables = _tables.setdefault(store, _Tables())
        self._rules = _Table(tables.rules)
        self._runs = _Table(tables.runs)
        self._targets = _Table(tables.targets)
        self._progress = _Table(tables.progress)
        self.rules = FakeRuleRepository(self._rules)
        self.runs = FakeRunRepository(self._runs)
        self.targets = FakeTargetStateRepository(self._targets)
        self.progress = FakeProgressRepository(self._progress)

    def commit(self) -> None:
        self._rules.commit()
        self._runs.commit()
        self._targets.commit()
        self._progress.commit()

    def discard(self) -> None:
        self._rules.discard()
        self._runs.discard()
        self._targets.discard()
        self._progress.discard()
