"""Automation DTOs: rules as their authors write and read them, dry runs, backtests and runs.

A rule's trigger may be sent as `trigger` or as `triggerEvent` (the issue's two spellings); it is answered
as `triggerEvent`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from worpen_api.http.parameters import EARLIEST, LATEST
from worpen_api.http.wire import Wire
from worpen_core.automation.commands import Backtest, ManualRun, RuleDraft, RulePatch
from worpen_core.automation.engine import BacktestItem, BacktestReport
from worpen_core.automation.model import (
    EVENT_TRIGGERS,
    NAME_PATTERN,
    TARGET_PATTERN,
    AutomationRule,
    AutomationRun,
    RunStatus,
    StormPolicy,
    Trigger,
)
from worpen_core.automation.plan import ActionType, LogLevel, ScriptOutcome, ScriptStatus
from worpen_core.automation.service import MAX_SCRIPT_LENGTH
from worpen_core.shared.errors import InvalidInput

RuleName = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=NAME_PATTERN,
        description="Letters, digits, spaces and '_.:#-', starting with a letter or a digit",
        examples=["restart on OOM"],
    ),
]
TargetService = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=300,
        pattern=TARGET_PATTERN,
        description="What the rule acts on: a container or service name, an agent id, or a glob of them "
        "(`saleor-*`, `*`)",
        examples=["saleor-*"],
    ),
]
Script = Annotated[
    str,
    Meta(
        max_length=MAX_SCRIPT_LENGTH,
        description="JavaScript run in a sandbox; it acts only by recording a plan through `docker.*`, "
        "`incident.*`, `notify.*` and `log.*`",
        examples=["if (event.exit_code === 137) { docker.restart(container_id); }"],
    ),
]
Schedule = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        description="A five-field cron expression, in UTC: SCHEDULE rules have one, other rules none",
        examples=["*/5 * * * *"],
    ),
]
Context = Annotated[
    dict[str, Any],
    Meta(
        max_length=100,
        description="What the script sees as read-only globals (`event`, `container`, `agent`, `metrics`, "
        "`service`, `container_id`, `node`); a name left out is `undefined`",
    ),
]
_day, _month = 86_400, 30 * 86_400
CooldownSeconds = Annotated[
    int, Meta(ge=0, le=_day, description="At least this long between two runs on the same target")
]
MaxAttempts = Annotated[
    int, Meta(ge=1, le=1000, description="Attempts within the window before the rule gives up on a target")
]
AttemptWindowSeconds = Annotated[int, Meta(ge=1, le=_month)]
BackoffSeconds = Annotated[
    int, Meta(ge=0, le=_day, description="The wait after the first attempt; it doubles after each attempt")
]
MaxBackoffSeconds = Annotated[
    int, Meta(ge=0, le=_day, description="The longest wait between two attempts; at least backoffSeconds")
]
ResetAfterSeconds = Annotated[
    int, Meta(ge=1, le=_month, description="A target quiet this long starts afresh (a give-up is lifted)")
]
Moment = (
    Annotated[datetime, Meta(tz=True, description="An RFC 3339 date-time with an offset")]
    | Annotated[float, Meta(ge=EARLIEST, le=LATEST, description="A unix time in seconds")]
)
Limit = Annotated[
    int, Meta(ge=1, le=10_000, description="Matching events replayed at most (`truncated` says if more)")
]
STORM_FIELDS = (
    "cooldown_seconds",
    "max_attempts",
    "attempt_window_seconds",
    "backoff_seconds",
    "max_backoff_seconds",
    "reset_after_seconds",
)


def moment(value: datetime | float) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)


def _same_trigger(nullable: bool) -> list[dict[str, Any]]:
    """JSON Schema for "`trigger` and `triggerEvent`, when both are given, say the same"."""
    return [
        {
            "if": {"properties": {"trigger": {"const": trigger.value}}, "required": ["trigger"]},
            "then": {
                "properties": {
                    "triggerEvent": {"enum": [trigger.value, None]} if nullable else {"const": trigger.value}
                }
            },
        }
        for trigger in Trigger
    ]


def _is_schedule(name: str) -> dict[str, Any]:
    return {"properties": {name: {"const": Trigger.SCHEDULE.value}}, "required": [name]}


def _one_trigger(trigger: Trigger | None, trigger_event: Trigger | None) -> Trigger | None:
    if trigger is not None and trigger_event is not None and trigger is not trigger_event:
        raise InvalidInput(
            f"says {trigger_event.value} where trigger says {trigger.value}: give one of them", "triggerEvent"
        )
    return trigger or trigger_event


class RuleIn(Wire, forbid_unknown_fields=True):
    name: RuleName
    target_service: TargetService
    script: Script
    trigger: Trigger | UnsetType = UNSET
    trigger_event: Trigger | UnsetType = UNSET
    active: bool = True
    schedule: Schedule | None = None
    cooldown_seconds: CooldownSeconds | None = None
    max_attempts: MaxAttempts | None = None
    attempt_window_seconds: AttemptWindowSeconds | None = None
    backoff_seconds: BackoffSeconds | None = None
    max_backoff_seconds: MaxBackoffSeconds | None = None
    reset_after_seconds: ResetAfterSeconds | None = None

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "A rule: the trigger as `trigger` or `triggerEvent` (one of them, or the same value "
        "in both); a SCHEDULE rule's cron expression in `schedule`; storm protection fields left out take "
        "their defaults (cooldown 30 s, 5 attempts in 3600 s, backoff 10 s doubling up to 300 s, reset "
        "after 600 s quiet). A script that does not compile is refused with its line and column.",
        "anyOf": [{"required": ["trigger"]}, {"required": ["triggerEvent"]}],
        "allOf": [
            *_same_trigger(nullable=False),
            {
                "if": {"anyOf": [_is_schedule("trigger"), _is_schedule("triggerEvent")]},
                "then": {"required": ["schedule"], "properties": {"schedule": {"type": "string"}}},
                "else": {"properties": {"schedule": {"type": "null"}}},
            },
        ],
    }

    def to_draft(self) -> RuleDraft:
        trigger = _one_trigger(
            None if isinstance(self.trigger, UnsetType) else self.trigger,
            None if isinstance(self.trigger_event, UnsetType) else self.trigger_event,
        )
        if trigger is None:
            raise InvalidInput("a rule needs a trigger (`trigger` or `triggerEvent`)", "trigger")
        storm = {name: value for name in STORM_FIELDS if (value := getattr(self, name)) is not None}
        return RuleDraft(
            name=self.name,
            trigger=trigger,
            target_service=self.target_service,
            script=self.script,
            active=self.active,
            schedule=self.schedule,
            storm=StormPolicy(**storm),
        )


class RulePatchIn(Wire, forbid_unknown_fields=True):
    """What to change; a field left out (or null) is kept, but `"schedule": null` removes the schedule."""

    name: RuleName | None = None
    trigger: Trigger | None = None
    trigger_event: Trigger | None = None
    target_service: TargetService | None = None
    script: Script | None = None
    active: bool | None = None
    schedule: Schedule | UnsetType | None = UNSET
    cooldown_seconds: CooldownSeconds | None = None
    max_attempts: MaxAttempts | None = None
    attempt_window_seconds: AttemptWindowSeconds | None = None
    backoff_seconds: BackoffSeconds | None = None
    max_backoff_seconds: MaxBackoffSeconds | None = None
    reset_after_seconds: ResetAfterSeconds | None = None

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "A partial update: fields left out or null are kept, except `schedule`, which null "
        "removes. The rule as changed must be valid as a whole (a SCHEDULE rule keeps a cron expression, "
        "the script compiles).",
        "allOf": _same_trigger(nullable=True),
    }

    def to_patch(self) -> RulePatch:
        return RulePatch(
            name=self.name,
            trigger=_one_trigger(self.trigger, self.trigger_event),
            target_service=self.target_service,
            script=self.script,
            active=self.active,
            schedule=self.schedule if isinstance(self.schedule, str) else None,
            clear_schedule=self.schedule is None,
            cooldown_seconds=self.cooldown_seconds,
            max_attempts=self.max_attempts,
            attempt_window_seconds=self.attempt_window_seconds,
            backoff_seconds=self.backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds,
            reset_after_seconds=self.reset_after_seconds,
        )


class RuleOut(Wire):
    id: str
    name: str
    trigger_event: Trigger
    target_service: str
    script: str
    active: bool
    last_run: Annotated[datetime | None, Meta(description="When the rule last ran, or null")]
    schedule: str | None
    cooldown_seconds: int
    max_attempts: int
    attempt_window_seconds: int
    backoff_seconds: int
    max_backoff_seconds: int
    reset_after_seconds: int
    created_at: datetime
    updated_at: datetime
    updated_by: Annotated[str, Meta(description="The name of the key that last changed the rule")]

    @classmethod
    def of(cls, rule: AutomationRule) -> RuleOut:
        storm = rule.storm
        return cls(
            id=rule.id,
            name=rule.name,
            trigger_event=rule.trigger,
            target_service=rule.target_service,
            script=rule.script,
            active=rule.active,
            last_run=rule.last_run_at,
            schedule=rule.schedule,
            cooldown_seconds=storm.cooldown_seconds,
            max_attempts=storm.max_attempts,
            attempt_window_seconds=storm.attempt_window_seconds,
            backoff_seconds=storm.backoff_seconds,
            max_backoff_seconds=storm.max_backoff_seconds,
            reset_after_seconds=storm.reset_after_seconds,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
            updated_by=rule.updated_by,
        )


class DryRunIn(Wire, forbid_unknown_fields=True):
    script: Script
    mock_context: Context = msgspec.field(default_factory=dict)


class ManualRunIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    context: Context | None = None
    """Added to what the script sees (`service` defaults to the rule's target; `event` is the run's)."""

    def to_command(self) -> ManualRun:
        return ManualRun(self.context)


class BacktestIn(Wire, forbid_unknown_fields=True):
    since: Moment
    until: Moment
    limit: Limit = 1000

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "The window of the event history to replay: `until` after `since`."
    }

    def to_command(self) -> Backtest:
        return Backtest(moment(self.since), moment(self.until), limit=self.limit)


class DraftBacktestIn(Wire, forbid_unknown_fields=True):
    rule: RuleIn
    since: Moment
    until: Moment
    limit: Limit = 1000

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "An unsaved rule (as it would be created) and the window of the event history to "
        "replay through it: `until` after `since`. Only rules fired by events have a history to replay.",
        "allOf": [
            {
                "properties": {
                    "rule": {
                        "properties": {
                            name: {"enum": sorted(trigger.value for trigger in EVENT_TRIGGERS)}
                            for name in ("trigger", "triggerEvent")
                        }
                    }
                }
            }
        ],
    }

    def to_command(self) -> Backtest:
        return Backtest(moment(self.since), moment(self.until), self.rule.to_draft(), self.limit)


class ActionOut(Wire):
    type: ActionType
    target: Annotated[
        str,
        Meta(
            description="What it acts on: a container for docker.*, a channel for notify.*, the issue for "
            "incident.open, empty otherwise"
        ),
    ]
    params: dict[str, Any]


class LogOut(Wire):
    level: LogLevel
    message: str


class ScriptErrorOut(Wire):
    message: str
    line: Annotated[int | None, Meta(description="1-based, in the script as written; null if unknown")]
    column: int | None


class DryRunOut(Wire):
    status: ScriptStatus
    actions: Annotated[list[ActionOut], Meta(description="The plan Worpen would apply, in order")]
    logs: list[LogOut]
    duration_ms: float
    error: ScriptErrorOut | None

    @classmethod
    def of(cls, outcome: ScriptOutcome) -> DryRunOut:
        return msgspec.convert(outcome, cls, from_attributes=True)


class AppliedOut(ActionOut):
    ok: bool
    detail: Annotated[str, Meta(description="What it did, or why it failed or was not applied")]


class RunOut(Wire):
    id: str
    rule_id: str
    rule: Annotated[str, Meta(description="The rule's name when it ran")]
    trigger: str
    event_id: Annotated[int | None, Meta(description="The journal event that fired it, if one did")]
    target: str | None
    node: str | None
    status: RunStatus
    matched: Annotated[bool, Meta(description="The script planned something")]
    reason: str | None
    context: Annotated[dict[str, Any], Meta(description="What the script saw")]
    plan: list[ActionOut]
    applied: list[AppliedOut]
    logs: list[LogOut]
    actor: Annotated[str, Meta(description="`automation`, or the name of the key that ran it by hand")]
    incident_id: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None

    @classmethod
    def of(cls, run: AutomationRun) -> RunOut:
        return cls(
            id=run.id,
            rule_id=run.rule_id,
            rule=run.rule_name,
            trigger=run.trigger,
            event_id=run.event_id,
            target=run.target,
            node=run.node,
            status=run.status,
            matched=run.matched,
            reason=run.reason,
            context=dict(run.context),
            plan=[msgspec.convert(action, ActionOut, from_attributes=True) for action in run.plan],
            applied=[
                AppliedOut(
                    type=done.action.type,
                    target=done.action.target,
                    params=dict(done.action.params),
                    ok=done.ok,
                    detail=done.detail,
                )
                for done in run.applied
            ],
            logs=[msgspec.convert(line, LogOut, from_attributes=True) for line in run.logs],
            actor=run.actor,
            incident_id=run.incident_id,
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_ms=run.duration_ms,
        )


class BacktestTotalsOut(Wire):
    events_matched: int
    runs: Annotated[int, Meta(description="Plans that would have been applied")]
    actions: Annotated[dict[str, int], Meta(description="Actions that would have been applied, by type")]
    targets: Annotated[list[str], Meta(description="Targets (node/name) that would have been acted on")]
    deferred: int
    suppressed: Annotated[
        int,
        Meta(
            description="Plans storm protection would not have applied: deferred then superseded, "
            "suppressed after a give-up, or given up on"
        ),
    ]
    gave_up: int
    errors: int


class BacktestItemOut(Wire):
    event_id: int | None
    at: datetime
    trigger: str
    target: str
    node: str
    verdict: Annotated[
        str,
        Meta(
            description="RUN, DEFER, SUPPRESS or GIVE_UP (storm protection), NO_ACTION, or ERROR (the "
            "script failed)"
        ),
    ]
    reason: str | None
    deferred: Annotated[bool, Meta(description="A deferred plan, run when its wait ended")]
    status: ScriptStatus
    actions: list[ActionOut]
    logs: list[LogOut]
    error: ScriptErrorOut | None

    @classmethod
    def of(cls, item: BacktestItem) -> BacktestItemOut:
        outcome = DryRunOut.of(item.outcome)
        return cls(
            event_id=item.event_id,
            at=item.at,
            trigger=item.trigger,
            target=item.target,
            node=item.node,
            verdict=item.verdict,
            reason=item.reason,
            deferred=item.deferred,
            status=outcome.status,
            actions=outcome.actions,
            logs=outcome.logs,
            error=outcome.error,
        )


class BacktestOut(Wire):
    rule: Annotated[str, Meta(description="The rule's name")]
    since: datetime
    until: datetime
    totals: BacktestTotalsOut
    truncated: Annotated[
        bool, Meta(description="More events matched than `limit`: the rest were not replayed")
    ]
    items: Annotated[list[BacktestItemOut], Meta(description="Per matching event, oldest first")]

    @classmethod
    def of(cls, report: BacktestReport) -> BacktestOut:
        return cls(
            rule=report.rule,
            since=report.since,
            until=report.until,
            totals=BacktestTotalsOut(
                events_matched=report.events_matched,
                runs=report.runs,
                actions=dict(report.actions),
                targets=list(report.targets),
                deferred=report.deferred,
                suppressed=report.suppressed,
                gave_up=report.gave_up,
                errors=report.errors,
            ),
            truncated=report.truncated,
            items=[BacktestItemOut.of(item) for item in report.items],
        )
