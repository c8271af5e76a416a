"""A pipeline definition as an operator writes it, and the checks that make it a Pipeline."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from worpen_core.containers.service import IMAGE_PATTERN
from worpen_core.pipelines.model import (
    Pipeline,
    StageSpec,
    check_env_name,
    check_labels,
    check_name,
)
from worpen_core.shared.errors import InvalidInput

MAX_STAGES = 50
MAX_COMMANDS = 200
MAX_COMMAND_LENGTH = 8192
MAX_TIMEOUT_SECONDS = 24 * 3600
MAX_ENV_VALUE = 32 * 1024
DEFAULT_TIMEOUT_SECONDS = 3600
_image = re.compile(IMAGE_PATTERN)


@dataclass(frozen=True, slots=True)
class StageDraft:
    name: str
    image: str
    commands: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    timeout_seconds: int | None = None
    depends_on: tuple[str, ...] | None = None
    """None: the previous stage (the first stage depends on nothing); () explicitly nothing."""
    approval: bool = False
    node_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PipelineDraft:
    id: str
    name: str
    repository: str
    branch: str
    stages: tuple[StageDraft, ...]
    cron: str | None = None
    webhook_secret: str | None = None
    """The push webhook's HMAC key in clear (sealed before it is stored); None keeps the stored one."""
    keep_on_failure: bool = False


def stages_of(
    drafts: tuple[StageDraft, ...], default_timeout: int = DEFAULT_TIMEOUT_SECONDS
) -> tuple[StageSpec, ...]:
    """The stages as specs, each error naming the stage and its field (`stages[1].dependsOn`)."""
    if not drafts:
        raise InvalidInput("a pipeline has at least one stage", "stages")
    if len(drafts) > MAX_STAGES:
        raise InvalidInput(f"a pipeline has at most {MAX_STAGES} stages", "stages")
    specs: list[StageSpec] = []
    seen: set[str] = set()
    for index, draft in enumerate(drafts):
        where = f"stages[{index}]"
        check_name(draft.name, f"{where}.name")
        about = f"stage {draft.name!r}: "
        if draft.name in seen:
            raise InvalidInput(f"{about}another stage has the same name", f"{where}.name")
        seen.add(draft.name)
        if len(draft.image) > 512 or not _image.match(draft.image):
            raise InvalidInput(f"{about}not an image reference such as 'repo/name:tag'", f"{where}.image")
        _check_commands(draft, about, where)
        for name, value in draft.env.items():
            _named(check_env_name, name, about, f"{where}.env")
            if "\x00" in value or len(value) > MAX_ENV_VALUE:
                raise InvalidInput(
                    f"{about}the value of {name} has a NUL character or more than {MAX_ENV_VALUE} characters",
                    f"{where}.env",
                )
        for name in draft.secrets:
            _named(check_name, name, about, f"{where}.secrets")
            _named(check_env_name, name, about, f"{where}.secrets")
        clash = sorted(set(draft.env) & set(draft.secrets))
        if clash:
            raise InvalidInput(f"{about}{', '.join(clash)} is both in env and in secrets", f"{where}.env")
        timeout = draft.timeout_seconds if draft.timeout_seconds is not None else default_timeout
        if not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
            raise InvalidInput(
                f"{about}must be 1 to {MAX_TIMEOUT_SECONDS} seconds", f"{where}.timeoutSeconds"
            )
        try:
            labels = check_labels(draft.node_labels, f"{where}.nodeSelector")
        except InvalidInput as exc:
            raise InvalidInput(about + exc.detail, exc.field) from exc
        depends_on: tuple[str, ...]
        if draft.depends_on is None:
            depends_on = (drafts[index - 1].name,) if index else ()
        else:
            depends_on = tuple(dict.fromkeys(draft.depends_on))
        specs.append(
            StageSpec(
                name=draft.name,
                image=draft.image,
                commands=draft.commands,
                env=dict(draft.env),
                secrets=tuple(dict.fromkeys(draft.secrets)),
                timeout_seconds=timeout,
                depends_on=depends_on,
                approval=draft.approval,
                node_labels=labels,
            )
        )
    _check_graph(specs)
    return tuple(specs)


def _check_commands(draft: StageDraft, about: str, where: str) -> None:
    if not draft.commands:
        raise InvalidInput(f"{about}needs at least one command", f"{where}.commands")
    if len(draft.commands) > MAX_COMMANDS:
        raise InvalidInput(f"{about}has at most {MAX_COMMANDS} commands", f"{where}.commands")
    for command in draft.commands:
        if not command.strip() or len(command) > MAX_COMMAND_LENGTH or "\x00" in command:
            raise InvalidInput(
                f"{about}each command is 1-{MAX_COMMAND_LENGTH} characters, not blank", f"{where}.commands"
            )


def _named(check: Callable[[str, str], str], name: str, about: str, where: str) -> None:
    try:
        check(name, where)
    except InvalidInput as exc:
        raise InvalidInput(f"{about}{name!r} {exc.detail}", exc.field) from exc


def _check_graph(specs: list[StageSpec]) -> None:
    """Dependencies name other stages, and never form a cycle."""
    names = {spec.name: index for index, spec in enumerate(specs)}
    for index, spec in enumerate(specs):
        for dependency in spec.depends_on:
            if dependency == spec.name:
                raise InvalidInput(f"stage {spec.name!r} depends on itself", f"stages[{index}].dependsOn")
            if dependency not in names:
                raise InvalidInput(
                    f"stage {spec.name!r} depends on {dependency!r}, which is not a stage of this pipeline",
                    f"stages[{index}].dependsOn",
                )
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        spec = specs[names[name]]
        for dependency in spec.depends_on:
            if state.get(dependency) == 1:
                cycle = " -> ".join([*path[path.index(dependency) :], dependency])
                raise InvalidInput(
                    f"stages depend on each other in a cycle: {cycle}", f"stages[{names[name]}].dependsOn"
                )
            if dependency not in state:
                visit(dependency, [*path, dependency])
        state[name] = 2

    for spec in specs:
        if spec.name not in state:
            visit(spec.name, [spec.name])


def pipeline_of(
    draft: PipelineDraft,
    stages: tuple[StageSpec, ...],
    at: datetime,
    by: str,
    webhook_secret: bytes | None,
    created_at: datetime | None = None,
) -> Pipeline:
    return Pipeline(
        id=draft.id,
        name=draft.name,
        repository=draft.repository,
        branch=draft.branch,
        stages=stages,
        created_at=created_at or at,
        updated_at=at,
        updated_by=by,
        cron=draft.cron,
        webhook_secret=webhook_secret,
        keep_on_failure=draft.keep_on_failure,
    )
