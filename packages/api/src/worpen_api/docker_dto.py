"""The wire format of containers, images, engines, the audit trail and domain events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from worpen_api.dto import Wire
from worpen_core.audit.model import AuditEntry, Outcome
from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerState,
    Health,
    Image,
    LogLine,
    LogStream,
    Pruned,
    PruneReport,
)
from worpen_core.containers.service import IMAGE_PATTERN, EngineStatus, TerminalSession
from worpen_core.events.model import Event

NodeName = Annotated[str, Meta(min_length=1, max_length=128, examples=["edge-7"])]
GraceSeconds = Annotated[
    int, Meta(ge=0, le=3600, description="Seconds to wait for the container to stop before killing it")
]


class ContainerOut(Wire):
    id: str
    name: str
    image: str
    state: ContainerState
    status: str
    node: str
    ports: str
    """Published ports as `docker ps` shows them: '8000:8000, 443:443'."""
    created_at: datetime
    labels: dict[str, str]
    health: Health

    @classmethod
    def of(cls, c: Container) -> ContainerOut:
        return cls(
            id=c.id,
            name=c.name,
            image=c.image,
            state=c.state,
            status=c.status,
            node=c.node,
            ports=", ".join(str(port) for port in c.ports),
            created_at=c.created_at,
            labels=c.labels,
            health=c.health,
        )


class MountOut(Wire):
    type: str
    source: str
    destination: str
    read_write: bool
    mode: str


class HealthCheckOut(Wire):
    start: datetime | None
    end: datetime | None
    exit_code: int
    output: str


class ContainerConfigOut(Wire):
    command: list[str]
    entrypoint: list[str]
    env: dict[str, str]
    """Values of variables whose names suggest a secret (PASSWORD, TOKEN, KEY, ...) are masked."""
    working_dir: str
    user: str
    hostname: str
    restart_policy: str


class ContainerDetailOut(ContainerOut):
    config: ContainerConfigOut
    mounts: list[MountOut]
    networks: dict[str, str]
    restart_count: int
    exit_code: int | None
    oom_killed: bool
    error: str
    pid: int | None
    started_at: datetime | None
    finished_at: datetime | None
    health_log: list[HealthCheckOut]

    @classmethod
    def of_detail(cls, d: ContainerDetail) -> ContainerDetailOut:
        return cls(
            **msgspec.structs.asdict(ContainerOut.of(d.container)),
            config=ContainerConfigOut(
                command=list(d.command),
                entrypoint=list(d.entrypoint),
                env=d.env,
                working_dir=d.working_dir,
                user=d.user,
                hostname=d.hostname,
                restart_policy=d.restart_policy,
            ),
            mounts=[MountOut(m.type, m.source, m.destination, m.read_write, m.mode) for m in d.mounts],
            networks=d.networks,
            restart_count=d.restart_count,
            exit_code=d.exit_code,
            oom_killed=d.oom_killed,
            error=d.error,
            pid=d.pid,
            started_at=d.started_at,
            finished_at=d.finished_at,
            health_log=[HealthCheckOut(h.start, h.end, h.exit_code, h.output) for h in d.health_log],
        )


class LogLineOut(Wire, omit_defaults=True):
    stream: LogStream
    line: str
    ts: datetime | None = None
    """When the engine logged it; left out with `timestamps=false`."""

    @classmethod
    def of(cls, line: LogLine, timestamps: bool) -> LogLineOut:
        return cls(line.stream, line.text, line.at if timestamps else None)


class ActionIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    timeout: GraceSeconds | None = None


class RemovedOut(Wire):
    id: str
    name: str
    node: str
    removed: Literal[True] = True


class PruneIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    dry_run: bool
    """Required, so that a request with no body removes nothing: `true` reports what would be removed."""
    all: bool = False
    """Remove every unused image, not only dangling ones."""
    node: NodeName | None = None
    """Required when Worpen manages several engines."""


class PrunedOut(Wire):
    removed: list[str]
    reclaimed_bytes: int

    @classmethod
    def of(cls, pruned: Pruned) -> PrunedOut:
        return cls(list(pruned.removed), pruned.reclaimed_bytes)


class PruneOut(Wire):
    node: str
    dry_run: bool
    containers: PrunedOut
    images: PrunedOut
    networks: PrunedOut
    build_cache: PrunedOut
    reclaimed_bytes: int

    @classmethod
    def of(cls, report: PruneReport) -> PruneOut:
        return cls(
            node=report.node,
            dry_run=report.dry_run,
            containers=PrunedOut.of(report.containers),
            images=PrunedOut.of(report.images),
            networks=PrunedOut.of(report.networks),
            build_cache=PrunedOut.of(report.build_cache),
            reclaimed_bytes=report.reclaimed_bytes,
        )


class LayerOut(Wire):
    hash: str
    instruction: str
    size: int


class ImageOut(Wire):
    id: str
    name: str
    tag: str
    total_size: int
    node: str
    containers: int
    created_at: datetime
    layers: list[LayerOut]

    @classmethod
    def of(cls, i: Image) -> ImageOut:
        return cls(
            id=i.id,
            name=i.name,
            tag=i.tag,
            total_size=i.total_size,
            node=i.node,
            containers=i.containers,
            created_at=i.created_at,
            layers=[LayerOut(layer.hash, layer.instruction, layer.size) for layer in i.layers],
        )


class PullIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    image: Annotated[str, Meta(min_length=1, max_length=512, pattern=IMAGE_PATTERN, examples=["nginx:1.27"])]
    node: NodeName | None = None
    """Required when Worpen manages several engines."""


class PullOut(Wire):
    image: str
    node: str
    status: str
    """The engine's last word, e.g. 'Status: Downloaded newer image for nginx:1.27'."""


class EngineOut(Wire):
    node: str
    state: Literal["AVAILABLE", "UNAVAILABLE", "UNKNOWN"]
    since: datetime | None
    detail: str | None
    version: str | None
    api_version: str | None
    os: str | None
    containers: int | None
    images: int | None
    """Counts when Worpen last (re)connected to the engine."""

    @classmethod
    def of(cls, status: EngineStatus) -> EngineOut:
        state: Literal["AVAILABLE", "UNAVAILABLE", "UNKNOWN"] = (
            "UNKNOWN" if status.available is None else "AVAILABLE" if status.available else "UNAVAILABLE"
        )
        info = status.info
        return cls(
            node=status.node,
            state=state,
            since=status.since,
            detail=status.detail,
            version=None if info is None else info.version,
            api_version=None if info is None else info.api_version,
            os=None if info is None else info.os,
            containers=None if info is None else info.containers,
            images=None if info is None else info.images,
        )


class AuditOut(Wire):
    id: str
    at: datetime
    actor: str
    actor_key_id: str
    action: str
    target: str
    node: str | None
    outcome: Outcome
    error: str | None
    finished_at: datetime | None

    @classmethod
    def of(cls, e: AuditEntry) -> AuditOut:
        return cls(
            id=e.id,
            at=e.at,
            actor=e.actor,
            actor_key_id=e.actor_key_id,
            action=e.action,
            target=e.target,
            node=e.node,
            outcome=e.outcome,
            error=e.error,
            finished_at=e.finished_at,
        )


class TerminalSessionOut(Wire):
    session_id: str
    node: str
    container_id: str
    container_name: str
    actor: str
    command: list[str]
    opened_at: datetime

    @classmethod
    def of(cls, s: TerminalSession) -> TerminalSessionOut:
        return cls(s.id, s.node, s.container_id, s.container_name, s.actor, list(s.command), s.opened_at)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def event_out(number: int, event: Event) -> dict[str, Any]:
    """A domain event on the wire: its number in the feed, its type, and its fields in camelCase."""
    fields = msgspec.to_builtins(event)
    return {"seq": number, "type": type(event).__name__, **{_camel(k): v for k, v in fields.items()}}
