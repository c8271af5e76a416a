"""Pipelines DTOs: definitions as operators write them (JSON, or the same document in YAML), the cockpit's
list, runs with their stages, stage logs, secrets (never their values) and the push webhook's payload.

A definition's stages may be sent as `stages` or `steps` (Woodpecker's word), as a list or as a mapping
from each stage's name to the rest of it. Fields that would give a stage power over its node (privileged,
host paths, devices, capabilities, the host's network or process namespace) are read only to be refused
with a message that says why."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec
from msgspec import UNSET, Meta, UnsetType

from worpen_api.http.wire import Wire
from worpen_core.containers.service import IMAGE_PATTERN
from worpen_core.pipelines.commands import (
    MAX_COMMAND_LENGTH,
    MAX_COMMANDS,
    MAX_ENV_VALUE,
    MAX_STAGES,
    MAX_TIMEOUT_SECONDS,
    PipelineDraft,
    StageDraft,
)
from worpen_core.pipelines.model import (
    ENV_PATTERN,
    LABEL_PATTERN,
    NAME_PATTERN,
    Pipeline,
    PipelineRun,
    PipelineSecret,
    RunStatus,
    StageLogLine,
    StageRun,
    StageSpec,
    StageStatus,
    TriggerKind,
)
from worpen_core.pipelines.service import MAX_SECRET_BYTES, MAX_WEBHOOK_SECRET, MIN_WEBHOOK_SECRET
from worpen_core.shared.errors import InvalidInput

Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=63,
        pattern=NAME_PATTERN,
        description="1-63 letters, digits or '_.-', starting with a letter or a digit",
        examples=["build"],
    ),
]
SecretRef = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=63,
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,62}$",
        description="A secret's name, injected as the environment variable of the same name",
        examples=["REGISTRY_TOKEN"],
    ),
]
EnvName = Annotated[str, Meta(min_length=1, max_length=128, pattern=ENV_PATTERN)]
EnvValue = Annotated[str, Meta(max_length=MAX_ENV_VALUE, pattern=r"^[^\x00]*$")]
Label = Annotated[str, Meta(min_length=1, max_length=63, pattern=LABEL_PATTERN)]
Image = Annotated[
    str, Meta(min_length=1, max_length=512, pattern=IMAGE_PATTERN, examples=["python:3.11-slim"])
]
Command = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=MAX_COMMAND_LENGTH,
        pattern=r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$",
        description="Run by /bin/sh -c in the workspace; not blank",
        examples=["pytest -q"],
    ),
]
Branch = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=255,
        pattern=r"^[A-Za-z0-9._+-][A-Za-z0-9._/+-]*$",
        description="A branch name such as `main` or `release/1.2` (git's rules: no `..`, `//`, `@{`, "
        "no trailing `/` or `.lock`)",
        examples=["main"],
    ),
]
Commit = Annotated[
    str, Meta(pattern=r"^[0-9a-fA-F]{4,64}$", description="A commit sha, full or abbreviated (4+ digits)")
]
Repository = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=2048,
        pattern=r"^[^\s\x00-\x1f\x7f-][^\s\x00-\x1f\x7f]*$",
        description="A git URL the server can reach (https, http, git, ssh or user@host:path); `file://` "
        "only below the directories WORPEN_PIPELINE_LOCAL_REPOS allows",
        examples=["https://git.example.com/team/app.git"],
    ),
]
Cron = Annotated[
    str,
    Meta(
        min_length=1, max_length=200, description="Five-field cron expression (UTC)", examples=["0 3 * * *"]
    ),
]
WebhookSecret = Annotated[
    str,
    Meta(
        max_length=MAX_WEBHOOK_SECRET,
        pattern=rf"^(|[\s\S]{{{MIN_WEBHOOK_SECRET},}})$",
        description=f"The push webhook's HMAC-SHA256 key, {MIN_WEBHOOK_SECRET}-{MAX_WEBHOOK_SECRET} "
        "characters; left out on a change keeps the stored one, empty removes it. Never answered back.",
    ),
]
Refused = list[Any] | None
"""A field a stage may not use: accepted by the decoder so that the refusal can say why."""

NEVER_PRIVILEGED = "stages never run privileged"
NEVER_HOST_PATHS = "stages never mount host paths or the Docker socket (the workspace is their only volume)"
_EMPTY = {"maxItems": 0}
_REFUSED_SCHEMA: dict[str, Any] = {
    "description": "A stage: its commands run in order by /bin/sh -c in a container of `image`, with the "
    "run's workspace as working directory, stopping at the first that fails. `dependsOn` left out: the "
    "previous stage (the first depends on nothing); `[]`: nothing. Stages never run privileged, never "
    "mount host paths or the Docker socket, get no devices, capabilities, host network or process "
    "namespace: asking for them (privileged, volumes, mounts, binds, devices, capAdd, networkMode, pid) "
    "is refused.",
    "allOf": [
        {
            "properties": {
                "privileged": {"not": {"const": True}},
                "volumes": _EMPTY,
                "mounts": _EMPTY,
                "binds": _EMPTY,
                "devices": _EMPTY,
                "capAdd": _EMPTY,
                "networkMode": {"type": "null"},
                "pid": {"type": "null"},
            }
        }
    ],
}


class StageFields(Wire, forbid_unknown_fields=True, kw_only=True):
    """A stage without its name: the value of a `stages` mapping, whose key names it."""

    image: Image
    commands: Annotated[list[Command], Meta(min_length=1, max_length=MAX_COMMANDS)]
    env: dict[EnvName, EnvValue] = msgspec.field(default_factory=dict)
    secrets: list[SecretRef] = msgspec.field(default_factory=list)
    timeout_seconds: Annotated[int, Meta(ge=1, le=MAX_TIMEOUT_SECONDS)] | None = None
    depends_on: list[Name] | None = None
    approval: Annotated[bool, Meta(description="Wait BLOCKED for an operator's approval")] = False
    node_selector: Annotated[
        dict[Label, Label], Meta(description="Labels the run's node must carry (all stages share it)")
    ] = msgspec.field(default_factory=dict)
    privileged: bool | None = None
    volumes: Refused = None
    mounts: Refused = None
    binds: Refused = None
    devices: Refused = None
    cap_add: Refused = None
    network_mode: str | None = None
    pid: str | None = None

    json_schema_extra: ClassVar[dict[str, Any]] = _REFUSED_SCHEMA

    def to_draft(self, name: str, where: str) -> StageDraft:
        self._refuse(name, where)
        return StageDraft(
            name=name,
            image=self.image,
            commands=tuple(self.commands),
            env=dict(self.env),
            secrets=tuple(self.secrets),
            timeout_seconds=self.timeout_seconds,
            depends_on=None if self.depends_on is None else tuple(self.depends_on),
            approval=self.approval,
            node_labels=dict(self.node_selector),
        )

    def _refuse(self, name: str, where: str) -> None:
        about = f"stage {name!r}: "
        if self.privileged:
            raise InvalidInput(about + NEVER_PRIVILEGED, f"{where}.privileged")
        for field, paths in (("volumes", self.volumes), ("mounts", self.mounts), ("binds", self.binds)):
            if paths:
                socket = "docker.sock" in msgspec.json.encode(paths).decode()
                why = "stages never mount the Docker socket" if socket else NEVER_HOST_PATHS
                raise InvalidInput(about + why, f"{where}.{field}")
        if self.devices:
            raise InvalidInput(f"{about}{NEVER_PRIVILEGED}: no host devices", f"{where}.devices")
        if self.cap_add:
            raise InvalidInput(f"{about}{NEVER_PRIVILEGED}: no added capabilities", f"{where}.capAdd")
        for field, value in (("networkMode", self.network_mode), ("pid", self.pid)):
            if value is not None:
                why = (
                    f"{NEVER_PRIVILEGED}: never in the host's namespaces ({field}: host)"
                    if value.strip().lower() == "host"
                    else f"{field} is not chosen by a stage: stages run in the engine's defaults"
                )
                raise InvalidInput(about + why, f"{where}.{field}")


class StageIn(StageFields, forbid_unknown_fields=True, kw_only=True):
    name: Name


Stages = (
    Annotated[list[StageIn], Meta(min_length=1, max_length=MAX_STAGES)]
    | Annotated[
        dict[Name, StageFields],
        Meta(min_length=1, max_length=MAX_STAGES, description="Stages by name, in order"),
    ]
)


class TriggersIn(Wire, forbid_unknown_fields=True):
    cron: Cron | None = None
    webhook_secret: WebhookSecret | None = None


class DefinitionIn(Wire, forbid_unknown_fields=True):
    id: Name
    name: Annotated[str, Meta(min_length=1, max_length=200, pattern=r"\S", examples=["app CI"])]
    repository: Repository
    branch: Branch
    stages: Stages | UnsetType = UNSET
    steps: Annotated[Stages, Meta(description="Another name for `stages`")] | UnsetType = UNSET
    triggers: TriggersIn | None = None
    keep_on_failure: Annotated[
        bool, Meta(description="Keep a failed run's containers and workspace on its node")
    ] = False

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "A pipeline definition, as JSON or as the same document in YAML. Its stages as "
        "`stages` or `steps` (one of them), a list or a mapping from name to stage. Errors name the "
        "field, with the stage (`stages[1].dependsOn`).",
        "oneOf": [
            {"required": ["stages"], "not": {"required": ["steps"]}},
            {"required": ["steps"], "not": {"required": ["stages"]}},
        ],
    }

    def to_draft(self) -> PipelineDraft:
        stages = self.stages if not isinstance(self.stages, UnsetType) else self.steps
        if isinstance(stages, UnsetType):
            raise InvalidInput("a pipeline needs `stages` (or `steps`)", "stages")
        if not isinstance(self.stages, UnsetType) and not isinstance(self.steps, UnsetType):
            raise InvalidInput("give the stages once, as `stages` or as `steps`", "steps")
        triggers = self.triggers or TriggersIn()
        return PipelineDraft(
            id=self.id,
            name=self.name,
            repository=self.repository,
            branch=self.branch,
            stages=_stage_drafts(stages),
            cron=triggers.cron,
            webhook_secret=triggers.webhook_secret,
            keep_on_failure=self.keep_on_failure,
        )


def _stage_drafts(stages: Sequence[StageIn] | Mapping[str, StageFields]) -> tuple[StageDraft, ...]:
    named = stages.items() if isinstance(stages, Mapping) else [(stage.name, stage) for stage in stages]
    return tuple(stage.to_draft(name, f"stages[{index}]") for index, (name, stage) in enumerate(named))


class StageOut(Wire):
    name: str
    image: str
    commands: list[str]
    env: dict[str, str]
    secrets: list[str]
    timeout_seconds: int
    depends_on: Annotated[list[str], Meta(description="Resolved: the stages it waits for")]
    approval: bool
    node_selector: dict[str, str]

    @classmethod
    def of(cls, spec: StageSpec) -> StageOut:
        return cls(
            name=spec.name,
            image=spec.image,
            commands=list(spec.commands),
            env=dict(spec.env),
            secrets=list(spec.secrets),
            timeout_seconds=spec.timeout_seconds,
            depends_on=list(spec.depends_on),
            approval=spec.approval,
            node_selector=dict(spec.node_labels),
        )


class TriggersOut(Wire):
    cron: str | None
    webhook_secret_set: Annotated[bool, Meta(description="Whether a webhook secret is stored (never shown)")]


class DefinitionOut(Wire):
    id: str
    name: str
    repository: str
    branch: str
    stages: list[StageOut]
    triggers: TriggersOut
    keep_on_failure: bool
    created_at: datetime
    updated_at: datetime
    updated_by: Annotated[str, Meta(description="The name of the key that last changed it")]

    @classmethod
    def of(cls, pipeline: Pipeline) -> DefinitionOut:
        return cls(
            id=pipeline.id,
            name=pipeline.name,
            repository=pipeline.repository,
            branch=pipeline.branch,
            stages=[StageOut.of(spec) for spec in pipeline.stages],
            triggers=TriggersOut(cron=pipeline.cron, webhook_secret_set=pipeline.webhook_secret is not None),
            keep_on_failure=pipeline.keep_on_failure,
            created_at=pipeline.created_at,
            updated_at=pipeline.updated_at,
            updated_by=pipeline.updated_by,
        )


def stage_duration(seconds: float | None) -> str:
    """`45s`, `2m 05s`, `1h 02m`, `-` when not started: as the cockpit shows a stage's time."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


Duration = Annotated[str, Meta(description='Short and human: "45s", "2m 05s", "1h 02m"; "-" when not run')]
DurationSeconds = Annotated[float | None, Meta(description="null when not started")]
STATUS_DESCRIPTION = (
    "SUCCESS, FAILED (a command failed or timed out), RUNNING, PENDING (queued, or waiting for the stages "
    "it depends on), BLOCKED (waiting for approval), SKIPPED (a dependency did not succeed, or declined), "
    "CANCELLED, ERROR (Worpen could not run it or lost it)"
)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class CockpitStageOut(Wire):
    id: Annotated[str, Meta(description="The stage's name")]
    name: str
    status: Annotated[StageStatus, Meta(description=STATUS_DESCRIPTION)]
    duration: Duration
    duration_seconds: DurationSeconds

    @classmethod
    def of(cls, stage: StageRun, now: datetime) -> CockpitStageOut:
        seconds = stage.duration_seconds(now)
        return cls(
            id=stage.name,
            name=stage.name,
            status=stage.status,
            duration=stage_duration(seconds),
            duration_seconds=_seconds(seconds),
        )


class CockpitOut(Wire):
    id: str
    name: str
    branch: Annotated[str, Meta(description="The latest run's branch, else the definition's")]
    commit: str | None
    author: str | None
    status: Annotated[RunStatus, Meta(description="The latest run's; PENDING when never run")]
    last_run: Annotated[datetime | None, Meta(description="When the latest run started (or was queued)")]
    run_id: str | None
    run_number: int | None
    stages: list[CockpitStageOut]

    @classmethod
    def of(cls, pipeline: Pipeline, run: PipelineRun | None, now: datetime) -> CockpitOut:
        if run is None:
            stages = [CockpitStageOut.of(StageRun(spec), now) for spec in pipeline.stages]
            return cls(
                id=pipeline.id,
                name=pipeline.name,
                branch=pipeline.branch,
                commit=None,
                author=None,
                status=RunStatus.PENDING,
                last_run=None,
                run_id=None,
                run_number=None,
                stages=stages,
            )
        return cls(
            id=pipeline.id,
            name=pipeline.name,
            branch=run.branch,
            commit=run.commit,
            author=run.author,
            status=run.status,
            last_run=run.started_at or run.created_at,
            run_id=run.id,
            run_number=run.number,
            stages=[CockpitStageOut.of(stage, now) for stage in run.stages],
        )


class TriggerIn(Wire, forbid_unknown_fields=True):
    pipeline_id: Name
    branch: Branch | None = None
    commit: Commit | None = None


class TriggeredOut(Wire):
    status: Annotated[str, Meta(examples=["TRIGGERED"])]
    pipeline_id: str
    run_id: str


class RerunOut(TriggeredOut):
    parent_id: Annotated[str, Meta(description="The run this one runs again")]


class RunStageOut(Wire):
    name: str
    status: Annotated[StageStatus, Meta(description=STATUS_DESCRIPTION)]
    exit_code: int | None
    node: Annotated[str | None, Meta(description="The run's node (all its stages run there)")]
    container_id: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: DurationSeconds
    duration: Duration
    error: str | None
    decided_by: Annotated[str | None, Meta(description="Who approved or declined it")]
    approval: bool
    depends_on: list[str]
    image: str
    log_lines: Annotated[int, Meta(description="Lines of its log stored so far")]

    @classmethod
    def of(cls, stage: StageRun, node: str | None, now: datetime) -> RunStageOut:
        seconds = stage.duration_seconds(now)
        return cls(
            name=stage.name,
            status=stage.status,
            exit_code=stage.exit_code,
            node=node,
            container_id=stage.container_id,
            started_at=stage.started_at,
            finished_at=stage.finished_at,
            duration_seconds=_seconds(seconds),
            duration=stage_duration(seconds),
            error=stage.error,
            decided_by=stage.decided_by,
            approval=stage.spec.approval,
            depends_on=list(stage.spec.depends_on),
            image=stage.spec.image,
            log_lines=stage.log_lines,
        )


class RunOut(Wire):
    id: str
    pipeline_id: str
    pipeline_name: str
    number: Annotated[int, Meta(description="1, 2, ... within its pipeline")]
    status: RunStatus
    trigger: TriggerKind
    triggered_by: Annotated[str, Meta(description="A key's name, `webhook:<pusher>` or `cron`")]
    repository: str
    branch: str
    commit: Annotated[str | None, Meta(description="As asked, then the fetched commit's full sha")]
    author: str | None
    message: str | None
    parent_id: Annotated[str | None, Meta(description="The run this one re-runs")]
    node: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: DurationSeconds
    error: str | None
    cancelled_by: str | None
    stages: list[RunStageOut]

    @classmethod
    def of(cls, run: PipelineRun, now: datetime) -> RunOut:
        seconds = None if run.started_at is None else ((run.finished_at or now) - run.started_at)
        return cls(
            id=run.id,
            pipeline_id=run.pipeline_id,
            pipeline_name=run.pipeline_name,
            number=run.number,
            status=run.status,
            trigger=run.trigger,
            triggered_by=run.triggered_by,
            repository=run.repository,
            branch=run.branch,
            commit=run.commit,
            author=run.author,
            message=run.message,
            parent_id=run.parent_id,
            node=run.node,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_seconds=None if seconds is None else _seconds(max(0.0, seconds.total_seconds())),
            error=run.error,
            cancelled_by=run.cancelled_by,
            stages=[RunStageOut.of(stage, run.node, now) for stage in run.stages],
        )


class LogLineOut(Wire):
    number: Annotated[int, Meta(description="1, 2, ... within the stage; the SSE id of the line")]
    stream: Annotated[str, Meta(description="stdout or stderr")]
    text: Annotated[str, Meta(description="Secrets masked as ********")]
    at: datetime

    @classmethod
    def of(cls, line: StageLogLine) -> LogLineOut:
        return cls(number=line.number, stream=line.stream, text=line.text, at=line.at)


class LogsOut(Wire):
    lines: list[LogLineOut]
    next: Annotated[int, Meta(description="The last line's number: the `after` of the next read")]
    status: Annotated[StageStatus, Meta(description="The stage's status: more lines may come until it ends")]


class SecretIn(Wire, forbid_unknown_fields=True):
    name: Name
    value: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_SECRET_BYTES,
            description="Up to 64 KiB in UTF-8; stored encrypted, never answered back",
        ),
    ]


class SecretOut(Wire):
    name: str
    created_at: datetime
    updated_at: datetime
    updated_by: str

    @classmethod
    def of(cls, secret: PipelineSecret) -> SecretOut:
        return cls(
            name=secret.name,
            created_at=secret.created_at,
            updated_at=secret.updated_at,
            updated_by=secret.updated_by,
        )


class ForgeRepository(msgspec.Struct):
    """What Gitea and GitHub say of the pushed repository (its other fields are ignored)."""

    clone_url: str | None = None
    html_url: str | None = None
    ssh_url: str | None = None
    git_url: str | None = None
    url: str | None = None

    def urls(self) -> tuple[str, ...]:
        found = (self.clone_url, self.html_url, self.ssh_url, self.git_url, self.url)
        return tuple(url for url in found if url)


class ForgeUser(msgspec.Struct):
    name: str | None = None
    login: str | None = None
    username: str | None = None

    def shown(self) -> str | None:
        return self.login or self.username or self.name


class PushIn(msgspec.Struct):
    """A Gitea or GitHub webhook's payload, read leniently: only the fields a push trigger needs."""

    repository: ForgeRepository
    ref: str | None = None
    after: str | None = None
    pusher: ForgeUser | None = None
    sender: ForgeUser | None = None

    def branch(self) -> str | None:
        if self.ref is None or not self.ref.startswith("refs/heads/"):
            return None
        return self.ref.removeprefix("refs/heads/") or None

    def pusher_name(self) -> str:
        for user in (self.pusher, self.sender):
            shown = user.shown() if user is not None else None
            if shown:
                return shown
        return "unknown"


class PipelineRunRef(Wire):
    pipeline_id: str
    run_id: str


class WebhookOut(Wire):
    status: Annotated[
        str, Meta(description="TRIGGERED (a push), IGNORED (another event)", examples=["TRIGGERED"])
    ]
    runs: Annotated[list[PipelineRunRef], Meta(description="The runs started (none for another branch)")]


class PongOut(Wire):
    status: Annotated[str, Meta(examples=["PONG"])]
