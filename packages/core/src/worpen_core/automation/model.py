"""Automation rules, their runs, and the storm protection of each (rule, target)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase

from worpen_core.automation.plan import Action, ScriptLog
from worpen_core.events.model import JsonValue
from worpen_core.shared.errors import InvalidInput


class Trigger(StrEnum):
    CONTAINER_DIED = "CONTAINER_DIED"
    CONTAINER_OOM_KILLED = "CONTAINER_OOM_KILLED"
    CONTAINER_UNHEALTHY = "CONTAINER_UNHEALTHY"
    AGENT_OFFLINE = "AGENT_OFFLINE"
    AGENT_CRITICAL = "AGENT_CRITICAL"
    CPU_HIGH = "CPU_HIGH"
    MEMORY_HIGH = "MEMORY_HIGH"
    DISK_USAGE_HIGH = "DISK_USAGE_HIGH"
    PIPELINE_FAILED = "PIPELINE_FAILED"
    """A pipeline run ended FAILED or ERROR."""
    SCHEDULE = "SCHEDULE"
    """Fired by the rule's cron expression."""
    MANUAL = "MANUAL"
    """Fired by an operator (POST .../rules/{id}/run)."""


EVENT_TRIGGERS = frozenset(Trigger) - {Trigger.SCHEDULE, Trigger.MANUAL}
"""The triggers that events of the journal fire."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 _.:#-]{0,199}$"
TARGET_PATTERN = r"^[A-Za-z0-9_.*?\[\]/-]{1,300}$"
"""A container or service name, an agent id, or a glob of them (`saleor-*`, `*`)."""
_name = re.compile(NAME_PATTERN)
_target = re.compile(TARGET_PATTERN)


def check_name(name: str) -> str:
    if not _name.match(name):
        raise InvalidInput(
            "must be 1-200 letters, digits, spaces or '_.:#-', starting with a letter or digit", "name"
        )
    return name


def check_target(target: str) -> str:
    if not _target.match(target):
        raise InvalidInput("must be a name or a glob such as 'saleor-*' or '*'", "targetService")
    return target


@dataclass(frozen=True, slots=True)
class StormPolicy:
    """How often a rule may act on one target. Attempts are the runs whose plan acts on containers;
    notifications and incidents alone are bounded by the cooldown."""

    cooldown_seconds: int = 30
    """At least this long between two runs on the same target."""
    max_attempts: int = 5
    """Attempts within `attempt_window_seconds` before the rule gives up on the target."""
    attempt_window_seconds: int = 3600
    backoff_seconds: int = 10
    """The wait after the first attempt; it doubles after each attempt (CrashLoopBackOff)."""
    max_backoff_seconds: int = 300
    reset_after_seconds: int = 600
    """A target that has not triggered the rule for this long starts afresh: attempts forgotten, a
    give-up lifted."""

    def __post_init__(self) -> None:
        for name, low, high in (
            ("cooldown_seconds", 0, 86_400),
            ("max_attempts", 1, 1000),
            ("attempt_window_seconds", 1, 30 * 86_400),
            ("backoff_seconds", 0, 86_400),
            ("max_backoff_seconds", 0, 86_400),
            ("reset_after_seconds", 1, 30 * 86_400),
        ):
            value = getattr(self, name)
            if not low <= value <= high:
                first, *rest = name.split("_")
                wire = first + "".join(part.title() for part in rest)
                raise InvalidInput(f"must be between {low} and {high}", wire)
        if self.max_backoff_seconds < self.backoff_seconds:
            raise InvalidInput("must be at least backoffSeconds", "maxBackoffSeconds")

    def backoff_after(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th attempt: backoff, doubling, capped."""
        doubled = self.backoff_seconds * 2 ** min(max(attempts - 1, 0), 30)
        return timedelta(seconds=min(doubled, self.max_backoff_seconds))


@dataclass(frozen=True, slots=True)
class AutomationRule:
    id: str
    name: str
    trigger: Trigger
    target_service: str
    script: str
    active: bool
    schedule: str | None
    """The cron expression of a SCHEDULE rule."""
    storm: StormPolicy
    created_at: datetime
    updated_at: datetime
    updated_by: str
    """The name of the key that last changed the rule."""
    updated_by_key_id: str
    last_run_at: datetime | None = None

    def targets(self, name: str) -> bool:
        """Whether `name` (a container, a service, an agent) is one the rule acts on."""
        return fnmatchcase(name, self.target_service)

    def fires_on(self, trigger: Trigger, target: str) -> bool:
        return self.active and self.trigger is trigger and self.targets(target)

    @property
    def actor(self) -> str:
        """Who the rule's actions are made as, in the audit trail and the logs."""
        return f"automation:{self.name}"


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    """Its plan is being applied (a run left so by a crash becomes INTERRUPTED at the next start)."""
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    """The script failed (error, time or memory limit), or an action of its plan did."""
    NO_ACTION = "NO_ACTION"
    """The script ran and planned nothing (its conditions did not match)."""
    DEFERRED = "DEFERRED"
    """Storm protection: the plan waits for the cooldown or the backoff; the newest such event runs then."""
    SUPPRESSED = "SUPPRESSED"
    """Storm protection: the rule gave up on this target; nothing is applied until it resets."""
    GAVE_UP = "GAVE_UP"
    """This event found the attempts used up: the rule gave up on the target and escalated."""
    INTERRUPTED = "INTERRUPTED"
    """Worpen stopped while applying the plan; what was applied is recorded, the rest was not."""


@dataclass(frozen=True, slots=True)
class AppliedAction:
    """What became of one action of a plan."""

    action: Action
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class AutomationRun:
    id: str
    rule_id: str
    rule_name: str
    trigger: str
    """The trigger kind (CONTAINER_DIED, SCHEDULE, MANUAL, ...)."""
    event_id: int | None
    """The journal event that fired it, if an event did."""
    target: str | None
    node: str | None
    status: RunStatus
    matched: bool
    """The script planned something."""
    reason: str | None
    context: dict[str, JsonValue]
    plan: tuple[Action, ...]
    applied: tuple[AppliedAction, ...]
    logs: tuple[ScriptLog, ...]
    actor: str
    """Who fired it: `automation` for events and schedules, the key's name for a manual run."""
    incident_id: str | None
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: float | None = None
    claim: str | None = None
    """What the run handles, held once per rule by the store: `event` for its event's first handling,
    `deferred <due>` for the deferred plan of its event run when its wait ended. A second claim of the
    same (rule, event, claim) is refused, so two leader terms never both act on one event. None for runs
    no event fired (schedules, manual runs) and for runs recorded before claims existed."""

    def finish(
        self,
        status: RunStatus,
        at: datetime,
        *,
        reason: str | None = None,
        applied: tuple[AppliedAction, ...] = (),
        incident_id: str | None = None,
    ) -> AutomationRun:
        return replace(
            self,
            status=status,
            reason=reason if reason is not None else self.reason,
            applied=applied or self.applied,
            incident_id=incident_id or self.incident_id,
            finished_at=at,
            duration_ms=round((at - self.started_at).total_seconds() * 1000, 3),
        )


@dataclass(frozen=True, slots=True)
class RunQuery:
    rule_id: str | None = None
    status: RunStatus | None = None
    limit: int = 100


class Verdict(StrEnum):
    RUN = "RUN"
    DEFER = "DEFER"
    GIVE_UP = "GIVE_UP"
    SUPPRESS = "SUPPRESS"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str | None = None
    due: datetime | None = None
    """When a deferred plan may run."""


@dataclass(slots=True)
class TargetState:
    """The storm protection of one rule on one target: the same state machine live and in backtests."""

    rule_id: str
    target: str
    attempts: list[datetime] = field(default_factory=list)
    """When the attempts within the window were made, oldest first."""
    last_run_at: datetime | None = None
    last_event_at: datetime | None = None
    next_allowed_at: datetime | None = None
    """The end of the backoff after the last attempt."""
    gave_up_at: datetime | None = None
    pending_event_id: int | None = None
    """The newest event waiting for the cooldown or backoff to pass (older ones are coalesced into it)."""
    pending_due_at: datetime | None = None
    incident_id: str | None = None

    def decide(self, now: datetime, storm: StormPolicy, *, acts: bool) -> Decision:
        """What to do with a plan for this target now; `acts` says whether it acts on containers (an
        attempt). Records the event's time (an event is what keeps a target from resetting)."""
        if self.last_event_at is not None and now - self.last_event_at >= timedelta(
            seconds=storm.reset_after_seconds
        ):
            self.attempts.clear()
            self.gave_up_at = self.next_allowed_at = None
        self.last_event_at = now
        window = timedelta(seconds=storm.attempt_window_seconds)
        self.attempts = [at for at in self.attempts if now - at < window]
        if self.gave_up_at is not None:
            return Decision(Verdict.SUPPRESS, f"gave up on this target at {_iso(self.gave_up_at)}")
        if acts and len(self.attempts) >= storm.max_attempts:
            self.gave_up_at = now
            self.pending_event_id = self.pending_due_at = None
            return Decision(
                Verdict.GIVE_UP,
                f"{len(self.attempts)} attempts within {storm.attempt_window_seconds}s did not help",
            )
        due = self.due(storm, acts=acts)
        if due is not None and now < due:
            return Decision(Verdict.DEFER, f"waits until {_iso(due)} (cooldown or backoff)", due)
        return Decision(Verdict.RUN)

    def due(self, storm: StormPolicy, *, acts: bool) -> datetime | None:
        """The earliest time another run may start."""
        times = []
        if self.last_run_at is not None:
            times.append(self.last_run_at + timedelta(seconds=storm.cooldown_seconds))
        if acts and self.next_allowed_at is not None:
            times.append(self.next_allowed_at)
        return max(times, default=None)

    def defer(self, event_id: int | None, due: datetime) -> None:
        self.pending_event_id = event_id
        self.pending_due_at = due

    def ran(self, now: datetime, storm: StormPolicy, *, acts: bool) -> None:
        self.last_run_at = now
        self.pending_event_id = self.pending_due_at = None
        if acts:
            self.attempts.append(now)
            self.next_allowed_at = now + storm.backoff_after(len(self.attempts))


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
