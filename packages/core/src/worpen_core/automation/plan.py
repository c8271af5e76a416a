"""What a script produces: an action plan, the lines it logged, and how its run ended. A script acts only
through this plan; Worpen applies it after the script returned."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from worpen_core.events.model import JsonValue


class ActionType(StrEnum):
    """The capability API's calls, by the name a script writes."""

    DOCKER_RESTART = "docker.restart"
    DOCKER_STOP = "docker.stop"
    DOCKER_START = "docker.start"
    DOCKER_PRUNE = "docker.prune"
    INCIDENT_OPEN = "incident.open"
    INCIDENT_RESOLVE = "incident.resolve"
    NOTIFY_WEBHOOK = "notify.webhook"
    NOTIFY_SLACK = "notify.slack"


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a plan. `target` is what it acts on: a container reference for docker.*, a channel
    name for notify.*, the issue for incident.open, "" otherwise; `params` the rest of the call."""

    type: ActionType
    target: str
    params: dict[str, JsonValue] = field(default_factory=dict)


class ScriptStatus(StrEnum):
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    """The script threw, or called the capability API wrongly."""
    TIMEOUT = "TIMEOUT"
    MEMORY_LIMIT = "MEMORY_LIMIT"


class LogLevel(StrEnum):
    INFO = "info"
    WARN = "warn"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ScriptLog:
    level: LogLevel
    message: str


@dataclass(frozen=True, slots=True)
class ScriptError:
    """Where and why a script failed to compile or to run; `line` and `column` are 1-based positions in
    the script as its author wrote it, when known."""

    message: str
    line: int | None = None
    column: int | None = None


@dataclass(frozen=True, slots=True)
class ScriptOutcome:
    """One run of a script. On anything but SUCCESS the plan is not applied: it is kept for the record."""

    status: ScriptStatus
    actions: tuple[Action, ...]
    logs: tuple[ScriptLog, ...]
    duration_ms: float
    error: ScriptError | None = None


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """What one run of a script may use at most."""

    time_ms: int = 100
    memory_bytes: int = 32 * 1024 * 1024
    max_actions: int = 100
    """Calls to the capability API per run; more fail the run."""
    max_log_lines: int = 100
