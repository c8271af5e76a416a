"""Automation's use cases for people: rules (written by admins, audited), dry runs, and the record of runs.
The engine (engine.py) is what makes rules act."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace

from worpen_core.access.model import Permission, Principal
from worpen_core.audit.service import AuditTrail
from worpen_core.automation.commands import RuleDraft, RulePatch
from worpen_core.automation.model import (
    AutomationRule,
    AutomationRun,
    RunQuery,
    Trigger,
    check_name,
    check_target,
)
from worpen_core.automation.plan import SandboxLimits, ScriptOutcome
from worpen_core.automation.ports import AutomationUnitOfWorkFactory, ScriptSandbox
from worpen_core.events.model import JsonValue
from worpen_core.shared.errors import Forbidden, InvalidInput, NotFound
from worpen_core.shared.ports import Clock, CronSchedule

MAX_SCRIPT_LENGTH = 64 * 1024


class ScriptInvalid(InvalidInput):
    """A script that does not compile: where and why, for the author."""

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        where = f" (line {line}, column {column})" if line is not None else ""
        super().__init__(f"the script does not compile{where}: {message}", "script")
        self.message = message
        self.line = line
        self.column = column


class Automation:
    """Rules and their runs. Keeps every rule in memory (the engine matches each event against them);
    the store is written first, so memory never holds a rule the store does not."""

    def __init__(
        self,
        uow: AutomationUnitOfWorkFactory,
        sandbox: ScriptSandbox,
        cron: CronSchedule,
        audit: AuditTrail,
        clock: Clock,
        limits: SandboxLimits,
    ) -> None:
        self._uow = uow
        self._sandbox = sandbox
        self._cron = cron
        self._audit = audit
        self._clock = clock
        self.limits = limits
        self._rules: dict[str, AutomationRule] = {}
        self._changes = 0
        """Changes made to the rules in memory by this process (see `refresh`)."""

    async def restore(self) -> int:
        """Load the rules; how many."""
        async with self._uow() as tx:
            rules = await tx.rules.list_all()
        self._rules = {rule.id: rule for rule in rules}
        return len(rules)

    async def refresh(self) -> None:
        """Take in the rules other replicas created, changed or deleted (several replicas on one
        database: every one lists the same rules, and the leader's engine fires them). A refresh that
        overlaps a change made here is dropped: it may have read the store before that change, and the
        next refresh reads it."""
        changes = self._changes
        async with self._uow() as tx:
            rules = await tx.rules.list_all()
        if changes == self._changes:
            self._rules = {rule.id: rule for rule in rules}

    def active(self) -> list[AutomationRule]:
        return [rule for rule in self._rules.values() if rule.active]

    def cached(self, rule_id: str) -> AutomationRule | None:
        return self._rules.get(rule_id)

    def ran(self, rule_id: str, run: AutomationRun) -> None:
        """Keep the cached rule's `last_run_at` in step with the store (the engine wrote both)."""
        rule = self._rules.get(rule_id)
        if rule is not None:
            self._changes += 1
            self._rules[rule_id] = replace(rule, last_run_at=run.started_at)

    async def rules(self) -> list[AutomationRule]:
        return sorted(self._rules.values(), key=lambda rule: rule.name)

    async def get(self, rule_id: str) -> AutomationRule:
        rule = self._rules.get(rule_id)
        if rule is None:
            raise NotFound("rule", rule_id)
        return rule

    async def check(self, draft: RuleDraft) -> RuleDraft:
        """`draft` if it is a rule Worpen can run: a valid name and target, a schedule exactly for
        SCHEDULE rules, a script that compiles."""
        check_name(draft.name)
        check_target(draft.target_service)
        if draft.trigger is Trigger.SCHEDULE:
            if not draft.schedule:
                raise InvalidInput("a SCHEDULE rule needs a cron expression", "schedule")
            why = self._cron.check(draft.schedule)
            if why is not None:
                raise InvalidInput(f"not a cron expression: {why}", "schedule")
        elif draft.schedule is not None:
            raise InvalidInput("only SCHEDULE rules have a schedule", "schedule")
        if len(draft.script) > MAX_SCRIPT_LENGTH:
            raise InvalidInput(f"a script has at most {MAX_SCRIPT_LENGTH} characters", "script")
        error = await self._sandbox.check(draft.script)
        if error is not None:
            raise ScriptInvalid(error.message, error.line, error.column)
        return draft

    async def create(self, principal: Principal, draft: RuleDraft) -> AutomationRule:
        _admin(principal)
        await self.check(draft)
        rule = draft.rule("rule_" + secrets.token_hex(8), self._clock.now(), principal.name, principal.key_id)
        return await self._save(principal, "rule.create", rule, new=True)

    async def update(self, principal: Principal, rule_id: str, patch: RulePatch) -> AutomationRule:
        _admin(principal)
        current = await self.get(rule_id)
        draft = await self.check(_patched(current, patch))
        changed = draft.rule(current.id, self._clock.now(), principal.name, principal.key_id)
        rule = replace(changed, created_at=current.created_at, last_run_at=current.last_run_at)
        return await self._save(principal, "rule.update", rule, new=False)

    async def _save(
        self, principal: Principal, action: str, rule: AutomationRule, *, new: bool
    ) -> AutomationRule:
        """Store the rule (audited as `action`), then keep it in memory."""

        async def save() -> AutomationRule:
            async with self._uow() as tx:
                await (tx.rules.add(rule) if new else tx.rules.update(rule))
                await tx.commit()
            self._changes += 1
            self._rules[rule.id] = rule
            return rule

        return await self._audit.run(principal, action, rule.name, None, save)

    async def delete(self, principal: Principal, rule_id: str) -> None:
        _admin(principal)
        rule = await self.get(rule_id)

        async def remove() -> None:
            async with self._uow() as tx:
                await tx.rules.delete(rule.id)
                await tx.targets.delete_rule(rule.id)
                await tx.commit()
            self._changes += 1
            self._rules.pop(rule.id, None)

        await self._audit.run(principal, "rule.delete", rule.name, None, remove)

    async def dry_run(self, script: str, context: Mapping[str, JsonValue]) -> ScriptOutcome:
        """Run `script` against `context` in the sandbox and return its plan, applying nothing."""
        if len(script) > MAX_SCRIPT_LENGTH:
            raise InvalidInput(f"a script has at most {MAX_SCRIPT_LENGTH} characters", "script")
        return await self._sandbox.run(script, context, self.limits)

    async def runs(self, query: RunQuery) -> list[AutomationRun]:
        async with self._uow() as tx:
            return await tx.runs.query(query)

    async def run(self, run_id: str) -> AutomationRun:
        async with self._uow() as tx:
            found = await tx.runs.get(run_id)
        if found is None:
            raise NotFound("run", run_id)
        return found


def _admin(principal: Principal) -> None:
    if not principal.can(Permission.ADMIN):
        raise Forbidden("only admins create, change and delete rules")


def _patched(rule: AutomationRule, patch: RulePatch) -> RuleDraft:
    changes = {
        name: value
        for name in (
            "cooldown_seconds",
            "max_attempts",
            "attempt_window_seconds",
            "backoff_seconds",
            "max_backoff_seconds",
            "reset_after_seconds",
        )
        if (value := getattr(patch, name)) is not None
    }
    trigger = patch.trigger or rule.trigger
    schedule = None if patch.clear_schedule else (patch.schedule or rule.schedule)
    if trigger is not Trigger.SCHEDULE and patch.trigger is not None and patch.schedule is None:
        schedule = None  # a rule moved off SCHEDULE drops its cron expression
    return RuleDraft(
        name=patch.name if patch.name is not None else rule.name,
        trigger=trigger,
        target_service=patch.target_service if patch.target_service is not None else rule.target_service,
        script=patch.script if patch.script is not None else rule.script,
        active=patch.active if patch.active is not None else rule.active,
        schedule=schedule,
        storm=replace(rule.storm, **changes),
    )
