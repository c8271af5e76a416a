"""Container, image and engine DTOs, derived from the domain's value objects."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from worpen_api.http.wire import NodeName, Wire
from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerState,
    Health,
    Image,
    LogLine,
    LogStream,
    PruneReport,
)
from worpen_core.containers.service import IMAGE_PATTERN, EngineStatus

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
        return msgspec.convert(report, cls, from_attributes=True)


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
        return msgspec.convert(i, cls, from_attributes=True)


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
    via_agent: bool
    """Served by an agent over its command channel, not dialled directly."""
    labels: dict[str, str]
    """The node's labels (its agent's --labels)."""

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
            via_agent=status.via_agent,
            labels=dict(status.labels),
        )
