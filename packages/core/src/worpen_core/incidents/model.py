"""Incidents and their timelines: one open incident per problem (service, node, issue), however often it
recurs, with the history of what happened to it."""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from worpen_core.shared.errors import Conflict, InvalidInput

SERVICE_MAX_LENGTH = 300
NODE_MAX_LENGTH = 128
ISSUE_MAX_LENGTH = 500
ACTION_MAX_LENGTH = 500
TRIGGER_MAX_LENGTH = 32
RULE_ID_MAX_LENGTH = 40
BY_MAX_LENGTH = 200
MESSAGE_MAX_LENGTH = 2000
"""Timeline messages and notes longer than this are cut: they are read by people, not parsed."""
KEY_SEPARATOR = "|"


class IncidentStatus(StrEnum):
    PENDING = "PENDING"
    """Open: being remediated, or waiting for its condition to clear."""
    RESOLVED = "RESOLVED"
    FAILED = "FAILED"
    """Open, and remediation gave up: someone has to look."""


class Severity(StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class ResolutionMethod(StrEnum):
    MANUAL = "MANUAL"
    AUTO = "AUTO"


class TimelineKind(StrEnum):
    OPENED = "opened"
    OCCURRENCE = "occurrence"
    REOPENED = "reopened"
    REMEDIATION = "remediation"
    ESCALATION = "escalation"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: datetime
    kind: TimelineKind
    message: str


def _cut(text: str) -> str:
    return text if len(text) <= MESSAGE_MAX_LENGTH else text[: MESSAGE_MAX_LENGTH - 1] + "…"


def _checked(value: str, name: str, max_length: int, *, required: bool = False) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"an incident needs a {name}", name)
    if len(value) > max_length:
        raise InvalidInput(f"an incident's {name} has at most {max_length} characters", name)
    return value


def dedup_key(service: str, node: str, issue: str) -> str:
    """What makes two reports the same problem. Service and node never hold the separator (checked by
    IncidentReport), so the key is unambiguous."""
    return KEY_SEPARATOR.join((service, node, issue))


@dataclass(frozen=True, slots=True)
class IncidentReport:
    """A problem seen once: by a trigger event (`trigger` names its kind, e.g. CONTAINER_DIED) or by a
    script (`trigger` None). `message` is the timeline's line for this sighting."""

    service: str
    node: str
    issue: str
    severity: Severity = Severity.HIGH
    action: str = ""
    trigger: str | None = None
    rule_id: str | None = None
    message: str = ""

    def __post_init__(self) -> None:
        for name, limit in (("service", SERVICE_MAX_LENGTH), ("node", NODE_MAX_LENGTH)):
            value = _checked(getattr(self, name), name, limit)
            if KEY_SEPARATOR in value:
                raise InvalidInput(f"an incident's {name} may not contain {KEY_SEPARATOR!r}", name)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "issue", _checked(self.issue, "issue", ISSUE_MAX_LENGTH, required=True))
        object.__setattr__(self, "action", _checked(self.action, "action", ACTION_MAX_LENGTH))
        if self.trigger is not None and len(self.trigger) > TRIGGER_MAX_LENGTH:
            raise InvalidInput(f"a trigger has at most {TRIGGER_MAX_LENGTH} characters", "trigger")
        if self.rule_id is not None and len(self.rule_id) > RULE_ID_MAX_LENGTH:
            raise InvalidInput(f"a rule id has at most {RULE_ID_MAX_LENGTH} characters", "rule_id")

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.service, self.node, self.issue)


@dataclass(slots=True)
class Incident:
    """`timeline` is the whole history when read by `Incidents.get`; every other read leaves it empty (it
    grows with every occurrence, and lists or the hot path of reports do not need it)."""

    id: str
    service: str
    node: str
    issue: str
    action: str
    status: IncidentStatus
    severity: Severity
    trigger: str | None
    rule_id: str | None
    dedup_key: str
    occurrences: int
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    method: ResolutionMethod | None = None
    notes: str | None = None
    timeline: tuple[TimelineEntry, ...] = field(default=())

    @property
    def time(self) -> datetime:
        """When it opened: the time the cockpit shows."""
        return self.opened_at

    @property
    def is_open(self) -> bool:
        return self.status is not IncidentStatus.RESOLVED

    @staticmethod
    def open(report: IncidentReport, at: datetime) -> tuple[Incident, TimelineEntry]:
        incident = Incident(
            id=secrets.token_hex(8),
            service=report.service,
            node=report.node,
            issue=report.issue,
            action=report.action,
            status=IncidentStatus.PENDING,
            severity=report.severity,
            trigger=report.trigger,
            rule_id=report.rule_id,
            dedup_key=report.dedup_key,
            occurrences=1,
            opened_at=at,
            last_seen_at=at,
        )
        return incident, TimelineEntry(at, TimelineKind.OPENED, _cut(report.message or report.issue))

    def without_timeline(self) -> Incident:
        return dataclasses.replace(self, timeline=())

    def recur(self, report: IncidentReport, at: datetime) -> TimelineEntry:
        """Seen again while open: counted, not opened again."""
        self.occurrences += 1
        self.last_seen_at = at
        return TimelineEntry(at, TimelineKind.OCCURRENCE, _cut(report.message or report.issue))

    def reopen(self, report: IncidentReport, at: datetime) -> TimelineEntry:
        """Seen again soon after it was resolved: open again, its history (and count) kept."""
        resolved = f"resolved by {self.resolved_by} at {self.resolved_at:%Y-%m-%d %H:%M:%S}"
        self.status = IncidentStatus.PENDING
        self.occurrences += 1
        self.last_seen_at = at
        self.resolved_at = self.resolved_by = self.method = self.notes = None
        message = report.message or report.issue
        return TimelineEntry(at, TimelineKind.REOPENED, _cut(f"reopened ({resolved}): {message}"))

    def step(self, message: str, action: str | None, at: datetime) -> TimelineEntry:
        if action is not None:
            self.action = _checked(action, "action", ACTION_MAX_LENGTH)
        return TimelineEntry(at, TimelineKind.REMEDIATION, _cut(message))

    def fail(self, reason: str, at: datetime) -> TimelineEntry:
        if not self.is_open:
            raise Conflict(f"incident {self.id} is resolved: it cannot fail")
        self.status = IncidentStatus.FAILED
        return TimelineEntry(at, TimelineKind.ESCALATION, _cut(reason))

    def resolve(self, by: str, method: ResolutionMethod, notes: str, at: datetime) -> TimelineEntry:
        if not self.is_open:
            raise Conflict(f"incident {self.id} is already resolved")
        self.status = IncidentStatus.RESOLVED
        self.resolved_at = at
        self.resolved_by = by[:BY_MAX_LENGTH]
        self.method = method
        self.notes = _cut(notes) if notes else None
        how = "automatically" if method is ResolutionMethod.AUTO else "by hand"
        said = f": {notes}" if notes else ""
        return TimelineEntry(at, TimelineKind.RESOLVED, _cut(f"resolved {how} by {self.resolved_by}{said}"))

    def reopens_at(self, at: datetime, window: timedelta) -> bool:
        """Whether a recurrence at `at` reopens this resolved incident rather than opening a new one."""
        return self.resolved_at is not None and at - self.resolved_at <= window


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    status: IncidentStatus | None = None
    service: str | None = None
    node: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class IncidentPolicy:
    reopen_window: timedelta = timedelta(minutes=10)
    """A resolved incident that recurs within this long reopens; later, a new incident opens."""
    grace: timedelta = timedelta(seconds=30)
    """How long a container must have been up before its incident resolves itself."""
