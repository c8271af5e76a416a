"""What callers ask of automation: new rules, changes to rules, backtests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from worpen_core.automation.model import AutomationRule, StormPolicy, Trigger
from worpen_core.events.model import JsonValue


@dataclass(frozen=True, slots=True)
class RuleDraft:
    """A rule as its author writes it (also what a backtest of an unsaved rule replays)."""

    name: str
    trigger: Trigger
    target_service: str
    script: str
    active: bool = True
    schedule: str | None = None
    storm: StormPolicy = field(default_factory=StormPolicy)

    def rule(self, rule_id: str, at: datetime, by: str, by_key_id: str) -> AutomationRule:
        """The rule this draft is, saved at `at` by the key named `by`."""
        return AutomationRule(
            id=rule_id,
            name=self.name,
            trigger=self.trigger,
            target_service=self.target_service,
            script=self.script,
            active=self.active,
            schedule=self.schedule,
            storm=self.storm,
            created_at=at,
            updated_at=at,
            updated_by=by,
            updated_by_key_id=by_key_id,
        )


@dataclass(frozen=True, slots=True)
class RulePatch:
    """A partial update: None leaves a field as it is (`schedule` is cleared by `clear_schedule`)."""

    name: str | None = None
    trigger: Trigger | None = None
    target_service: str | None = None
    script: str | None = None
    active: bool | None = None
    schedule: str | None = None
    clear_schedule: bool = False
    cooldown_seconds: int | None = None
    max_attempts: int | None = None
    attempt_window_seconds: int | None = None
    backoff_seconds: int | None = None
    max_backoff_seconds: int | None = None
    reset_after_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Backtest:
    """Replay the journal between `since` and `until` through a rule (a saved one, or `draft`)."""

    since: datetime
    until: datetime
    draft: RuleDraft | None = None
    limit: int = 1000
    """Matching events replayed at most (the answer says when more matched)."""


@dataclass(frozen=True, slots=True)
class ManualRun:
    """An operator's run of a MANUAL rule; `context` is added to what the script sees."""

    context: dict[str, JsonValue] | None = None
