"""Containers, images and engines as the domain sees them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ContainerState(StrEnum):
    RUNNING = "RUNNING"
    EXITED = "EXITED"
    RESTARTING = "RESTARTING"
    PAUSED = "PAUSED"
    CREATED = "CREATED"
    DEAD = "DEAD"
    REMOVING = "REMOVING"


class Health(StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    STARTING = "STARTING"
    NONE = "NONE"


@dataclass(frozen=True, slots=True)
class PortBinding:
    private: int
    protocol: str = "tcp"
    public: int | None = None
    ip: str | None = None

    def __str__(self) -> str:
        suffix = "" if self.protocol == "tcp" else f"/{self.protocol}"
        if self.public is None:
            return f"{self.private}{suffix}"
        return f"{self.public}:{self.private}{suffix}"


@dataclass(frozen=True, slots=True)
class Container:
    id: str
    name: str
    image: str
    state: ContainerState
    status: str
    """The engine's own words: 'Up 2 hours', 'Exited (137) 10 minutes ago'."""
    node: str
    created_at: datetime
    ports: tuple[PortBinding, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    health: Health = Health.NONE


@dataclass(frozen=True, slots=True)
class Mount:
    type: str
    source: str
    destination: str
    read_write: bool
    mode: str = ""


@dataclass(frozen=True, slots=True)
class HealthCheckResult:
    start: datetime | None
    end: datetime | None
    exit_code: int
    output: str


@dataclass(frozen=True, slots=True)
class ContainerDetail:
    """What an inspect tells Worpen about one container."""

    container: Container
    command: tuple[str, ...]
    entrypoint: tuple[str, ...]
    env: dict[str, str]
    working_dir: str
    user: str
    hostname: str
    restart_policy: str
    mounts: tuple[Mount, ...]
    networks: dict[str, str]
    """Network name to the container's IP address in it."""
    restart_count: int
    exit_code: int | None
    oom_killed: bool
    error: str
    pid: int | None
    started_at: datetime | None
    finished_at: datetime | None
    health_log: tuple[HealthCheckResult, ...] = ()


class LogStream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class LogLine:
    stream: LogStream
    text: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LogQuery:
    tail: int | None = 100
    """How many of the last lines; None for all of them."""
    since: datetime | None = None
    stdout: bool = True
    stderr: bool = True
    follow: bool = False


@dataclass(frozen=True, slots=True)
class ImageLayer:
    hash: str
    """The layer's image id, or '<missing>' for layers built elsewhere (as `docker history` says)."""
    instruction: str
    size: int


@dataclass(frozen=True, slots=True)
class Image:
    id: str
    name: str
    tag: str
    total_size: int
    node: str
    containers: int
    """How many containers (running or not) use it."""
    created_at: datetime
    layers: tuple[ImageLayer, ...] = ()


@dataclass(frozen=True, slots=True)
class PruneRequest:
    all: bool = False
    """Prune unused images too, not only dangling ones (like `docker system prune --all`)."""
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Pruned:
    removed: tuple[str, ...]
    reclaimed_bytes: int


@dataclass(frozen=True, slots=True)
class PruneReport:
    node: str
    dry_run: bool
    containers: Pruned
    images: Pruned
    networks: Pruned
    build_cache: Pruned

    @property
    def reclaimed_bytes(self) -> int:
        kinds = (self.containers, self.images, self.networks, self.build_cache)
        return sum(kind.reclaimed_bytes for kind in kinds)


@dataclass(frozen=True, slots=True)
class PullProgress:
    status: str
    layer: str | None = None
    current: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class EngineEvent:
    """One entry of an engine's event stream, before Worpen makes a domain event of it."""

    type: str
    """'container', 'image', 'network', ..."""
    action: str
    """'start', 'die', 'oom', 'health_status: healthy', 'destroy', 'pull', ..."""
    actor_id: str
    attributes: dict[str, str]
    time_nanos: int


@dataclass(frozen=True, slots=True)
class ContainerUsage:
    """One reading of a container's cumulative CPU time, as the engine's stats give it. Two readings
    make a CPU share (see `cpu_percent`)."""

    cpu_nanos: int
    """CPU time the container has used since it started."""
    system_nanos: int
    """CPU time the whole host has spent (all cores), at the same moment."""
    online_cpus: int
    memory_bytes: int | None = None

    def cpu_percent(self, earlier: ContainerUsage) -> float | None:
        """CPU use between `earlier` and this reading as `docker stats` shows it: 100 is one core fully
        busy, so a container may use up to `online_cpus` x 100. None when the readings cannot be compared
        (the container restarted in between, or no host time passed)."""
        used = self.cpu_nanos - earlier.cpu_nanos
        elapsed = self.system_nanos - earlier.system_nanos
        if used < 0 or elapsed <= 0:
            return None
        return used / elapsed * self.online_cpus * 100


@dataclass(frozen=True, slots=True)
class EngineInfo:
    version: str
    api_version: str
    os: str
    containers: int
    images: int


WORKLOAD_LABEL = "worpen.workload"
"""Carried by the containers Worpen runs as work (pipeline stages): what happens to them is reported by
the work's own events, so their engine events make no container events (a stage exiting 1 is a result,
not a crash for self-healing to restart)."""


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """A container Worpen creates to run work (a pipeline stage). It can only mount a named volume of its
    node: there is no way to ask for privileges, host paths or the engine's socket."""

    name: str
    image: str
    command: tuple[str, ...]
    """The whole command line, run as it is: the image's own entrypoint is not used."""
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    volume: str | None = None
    """A named volume mounted at `mount_path`, which is also the working directory."""
    mount_path: str = "/workspace"
