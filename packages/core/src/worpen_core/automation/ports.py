"""What automation needs from the outside: a sandbox to run scripts in, and storage for rules, runs and
the storm protection's state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Protocol

from worpen_core.automation.model import AutomationRule, AutomationRun, RunQuery, TargetState
from worpen_core.automation.plan import SandboxLimits, ScriptError, ScriptOutcome
from worpen_core.events.model import JsonValue
from worpen_core.shared.ports import UnitOfWork


class ScriptSandbox(Protocol):
    """Runs untrusted scripts with no I/O of their own: they see a read-only context and can only record
    actions through the capability API."""

    async def check(self, script: str) -> ScriptError | None:
        """Why `script` does not compile, or None when it does."""
        ...

    async def run(
        self, script: str, context: Mapping[str, JsonValue], limits: SandboxLimits
    ) -> ScriptOutcome:
        """Run `script` with `context`'s keys as read-only globals. Never raises for anything the script
        does: a throw, a limit reached or a bad call is the outcome's status and error."""
        ...


class RuleRepository(Protocol):
    async def add(self, rule: AutomationRule) -> None:
        """Store a new rule (a name already taken raises Conflict)."""
        ...

    async def update(self, rule: AutomationRule) -> None: ...

    async def get(self, rule_id: str) -> AutomationRule | None: ...

    async def list_all(self) -> list[AutomationRule]:
        """Every rule, ordered by name."""
        ...

    async def delete(self, rule_id: str) -> bool: ...

    async def mark_run(self, rule_id: str, at: datetime) -> None:
        """Set the rule's `last_run_at` (no-op for a deleted rule)."""
        ...


class RunRepository(Protocol):
    async def add(self, run: AutomationRun) -> bool:
        """Store a new run; False, storing nothing, when its rule has a run with the same event and
        claim already (another leader term handled that event: the run must not be applied)."""
        ...

    async def update(self, run: AutomationRun) -> None: ...

    async def get(self, run_id: str) -> AutomationRun | None: ...

    async def query(self, query: RunQuery) -> list[AutomationRun]:
        """Newest first."""
        ...

    async def exists_for_event(self, rule_id: str, event_id: int) -> bool:
        """Whether the rule already handled this journal event (the engine resumes after a restart)."""
        ...

    async def newest_event_id(self) -> int | None:
        """The highest journal event id any run was recorded for (None before the first)."""
        ...

    async def running(self) -> list[AutomationRun]:
        """Runs still RUNNING (after a restart: those a crash interrupted)."""
        ...


class TargetStateRepository(Protocol):
    async def get(self, rule_id: str, target: str) -> TargetState | None: ...

    async def save(self, state: TargetState) -> None:
        """Insert or replace."""
        ...

    async def due(self, now: datetime, limit: int) -> list[TargetState]:
        """States with a pending event due at or before `now`, earliest first."""
        ...

    async def delete_rule(self, rule_id: str) -> None:
        """Forget every target of a deleted rule."""
        ...


class ProgressRepository(Protocol):
    """Named positions (a journal cursor, a cron's last slot as epoch seconds)."""

    async def get(self, name: str) -> int | None: ...

    async def set(self, name: str, position: int) -> None: ...

    async def advance(self, name: str, expected: int | None, position: int) -> bool:
        """Set the position to `position` only if it is still `expected` (None: not set yet), atomically:
        whether this call moved it (of engines claiming one cron slot, one wins)."""
        ...


class AutomationUnitOfWork(UnitOfWork, Protocol):
    rules: RuleRepository
    runs: RunRepository
    targets: TargetStateRepository
    progress: ProgressRepository


AutomationUnitOfWorkFactory = Callable[[], AutomationUnitOfWork]
