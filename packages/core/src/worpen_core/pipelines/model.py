"""Pipelines, their runs and the stages of each run."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from worpen_core.shared.errors import InvalidInput, NotFound

WORKSPACE = "/workspace"
"""Where every stage finds the run's workspace (the repository's files); also its working directory."""
MASK = "********"
"""What a secret's value becomes in a stage's log."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""A pipeline id, a stage name, a secret name: safe in container names, labels and URLs."""
ENV_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$"
_name = re.compile(NAME_PATTERN)
_env = re.compile(ENV_PATTERN)
_label = re.compile(LABEL_PATTERN)


class StageStatus(StrEnum):
    PENDING = "PENDING"
    """Not started: waiting for its run's node, for the stages it depends on, or for an approval given."""
    BLOCKED = "BLOCKED"
    """Its dependencies succeeded and it waits for an operator to approve (or decline) it."""
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    """Every command exited 0."""
    FAILED = "FAILED"
    """A command exited non-zero, or the stage ran past its timeout and was killed."""
    SKIPPED = "SKIPPED"
    """Never ran: a stage it depends on did not succeed, or an operator declined it."""
    CANCELLED = "CANCELLED"
    """An operator cancelled the run before or while it ran."""
    ERROR = "ERROR"
    """Worpen could not run it or lost it: image missing, engine gone, lease expired, server crashed."""

    @property
    def finished(self) -> bool:
        return self in _FINISHED_STAGE


_FINISHED_STAGE = frozenset(
    {StageStatus.SUCCESS, StageStatus.FAILED, StageStatus.SKIPPED, StageStatus.CANCELLED, StageStatus.ERROR}
)


class RunStatus(StrEnum):
    PENDING = "PENDING"
    """Queued: no node has a free slot (or no node matches its labels) yet."""
    RUNNING = "RUNNING"
    BLOCKED = "BLOCKED"
    """Nothing runs and a stage waits for approval."""
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    """A stage failed (its dependents were skipped)."""
    CANCELLED = "CANCELLED"
    """An operator cancelled it, or declined one of its approvals."""
    ERROR = "ERROR"
    """Worpen could not run it: the source could not be fetched, a stage ended in ERROR."""

    @property
    def finished(self) -> bool:
        return self in _FINISHED_RUN

    @property
    def active(self) -> bool:
        """Holding a slot on its node."""
        return self in (RunStatus.RUNNING, RunStatus.BLOCKED)


_FINISHED_RUN = frozenset({RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.ERROR})


class TriggerKind(StrEnum):
    MANUAL = "MANUAL"
    WEBHOOK = "WEBHOOK"
    CRON = "CRON"
    RERUN = "RERUN"


def check_name(value: str, what: str) -> str:
    if not _name.match(value):
        raise InvalidInput("must be 1-63 letters, digits or '_.-', starting with a letter or digit", what)
    return value


def check_env_name(value: str, what: str) -> str:
    if not _env.match(value):
        raise InvalidInput("must be an environment variable name (letters, digits, '_')", what)
    return value


def check_labels(labels: Mapping[str, str], what: str) -> dict[str, str]:
    for key, value in labels.items():
        if not _label.match(key) or not _label.match(value):
            raise InvalidInput(
                f"label {key}={value!r}: keys and values are 1-63 of letters, digits, '_./-'", what
            )
    return dict(labels)


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One stage of a definition: `commands` run in order by `/bin/sh -c` in a container of `image`,
    stopping at the first that fails."""

    name: str
    image: str
    commands: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    """Names of pipeline secrets, injected as environment variables of the same names."""
    timeout_seconds: int = 3600
    depends_on: tuple[str, ...] = ()
    approval: bool = False
    """Wait BLOCKED for an operator's approval before running."""
    node_labels: dict[str, str] = field(default_factory=dict)
    """The run's node must carry every one of these labels."""


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: str
    name: str
    repository: str
    branch: str
    stages: tuple[StageSpec, ...]
    created_at: datetime
    updated_at: datetime
    updated_by: str
    cron: str | None = None
    """A five-field cron expression (UTC) that triggers a run of `branch`'s head."""
    webhook_secret: bytes | None = None
    """The push webhook's HMAC key, sealed by the SecretCipher; None: the webhook starts no run of it."""
    keep_on_failure: bool = False
    """Keep a failed run's containers and workspace on its node for inspection."""

    def node_labels(self) -> dict[str, str]:
        return required_labels(self.stages)


def required_labels(stages: Iterable[StageSpec]) -> dict[str, str]:
    """Every label any stage asks for: all stages of a run share its node (the workspace lives there)."""
    labels: dict[str, str] = {}
    for stage in stages:
        labels.update(stage.node_labels)
    return labels


@dataclass(slots=True)
class StageRun:
    spec: StageSpec
    status: StageStatus = StageStatus.PENDING
    exit_code: int | None = None
    container_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    lease_expires_at: datetime | None = None
    error: str | None = None
    decided_by: str | None = None
    """Who approved or declined it."""
    log_lines: int = 0
    """How many lines of its log are stored (the last line's number)."""

    @property
    def name(self) -> str:
        return self.spec.name

    def duration_seconds(self, now: datetime) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or now
        return max(0.0, (end - self.started_at).total_seconds())


@dataclass(slots=True)
class PipelineRun:
    id: str
    pipeline_id: str
    pipeline_name: str
    number: int
    """The run's number within its pipeline (1, 2, ...), given when it is stored."""
    status: RunStatus
    trigger: TriggerKind
    triggered_by: str
    """Who or what started it: an operator's name, `webhook:<pusher>`, `cron`."""
    repository: str
    branch: str
    commit: str | None
    """Asked for, then the fetched commit's full sha."""
    created_at: datetime
    stages: list[StageRun]
    keep_on_failure: bool = False
    author: str | None = None
    message: str | None = None
    parent_id: str | None = None
    """The run this one re-runs."""
    node: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None
    cancelled_by: str | None = None

    def stage(self, name: str) -> StageRun:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise NotFound("stage", name)

    def node_labels(self) -> dict[str, str]:
        return required_labels(stage.spec for stage in self.stages)


@dataclass(frozen=True, slots=True)
class RunQuery:
    pipeline_id: str | None = None
    status: RunStatus | None = None
    limit: int = 50
    before_number: int | None = None
    """With pipeline_id: runs numbered below this (a page's cursor)."""


@dataclass(frozen=True, slots=True)
class StageLogLine:
    number: int
    """1, 2, ... within the stage; the SSE id of the line."""
    stream: str
    """stdout or stderr."""
    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PipelineSecret:
    name: str
    sealed: bytes
    """The value, encrypted by the SecretCipher: never stored or shown in clear."""
    created_at: datetime
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True, slots=True)
class Source:
    """A repository's files at one commit, as a tar archive to copy into a workspace."""

    commit: str
    archive: bytes
    author: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class NodeSlots:
    """A node runs at most `limit` pipeline runs at once."""

    node: str
    labels: dict[str, str]
    used: int
    limit: int
