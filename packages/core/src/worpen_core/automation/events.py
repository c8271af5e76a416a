"""What automation tells the rest of Worpen: a rule ran, a script logged, a rule gave up on a target."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.automation.model import AutomationRun, RunStatus
from worpen_core.automation.plan import LogLevel
from worpen_core.logs.model import Level
from worpen_core.logs.render import Narrated, Rendered

_RUN_LEVELS = {
    RunStatus.SUCCEEDED: Level.SUCCESS,
    RunStatus.FAILED: Level.ERROR,
    RunStatus.GAVE_UP: Level.ERROR,
    RunStatus.INTERRUPTED: Level.WARN,
    RunStatus.SUPPRESSED: Level.WARN,
}
_SCRIPT_LEVELS = {LogLevel.INFO: Level.INFO, LogLevel.WARN: Level.WARN, LogLevel.ERROR: Level.ERROR}


@dataclass(frozen=True, slots=True)
class RuleRan(Narrated):
    """A rule's run ended (or was deferred, suppressed or interrupted)."""

    run_id: str
    rule_id: str
    rule: str
    trigger: str
    target: str | None
    node: str | None
    status: RunStatus
    reason: str | None
    actions: int
    at: datetime

    @property
    def subject(self) -> str:
        return f"automation:{self.rule}"

    @staticmethod
    def of(run: AutomationRun) -> RuleRan:
        return RuleRan(
            run.id,
            run.rule_id,
            run.rule_name,
            run.trigger,
            run.target,
            run.node,
            run.status,
            run.reason,
            len(run.plan),
            run.finished_at or run.started_at,
        )

    def line(self) -> Rendered:
        on = f" on {self.target}" if self.target else ""
        why = f": {self.reason}" if self.reason else ""
        status = self.status.value.lower()
        text = f"rule {self.rule} ({self.trigger}){on}: {status}, {self.actions} action(s){why}"
        return Rendered(_RUN_LEVELS.get(self.status, Level.INFO), self.subject, text)


@dataclass(frozen=True, slots=True)
class ScriptLogged(Narrated):
    """A line a rule's script wrote with log.info / log.warn / log.error."""

    run_id: str
    rule: str
    level: LogLevel
    message: str
    at: datetime

    @property
    def subject(self) -> str:
        return f"automation:{self.rule}"

    def line(self) -> Rendered:
        return Rendered(_SCRIPT_LEVELS[self.level], self.subject, self.message)


@dataclass(frozen=True, slots=True)
class RemediationGaveUp(Narrated):
    """A rule used up its attempts on a target: it stops acting on it until the target has been quiet
    for the rule's reset period. Someone has to look."""

    rule_id: str
    rule: str
    target: str
    node: str | None
    attempts: int
    incident_id: str | None
    at: datetime

    @property
    def subject(self) -> str:
        return f"automation:{self.rule}"

    def line(self) -> Rendered:
        where = f" on {self.node}" if self.node else ""
        return Rendered(
            Level.ERROR,
            self.subject,
            f"rule {self.rule} gave up on {self.target}{where} after {self.attempts} attempts: "
            "it will not act on it again until it has been quiet for the rule's reset period",
        )
