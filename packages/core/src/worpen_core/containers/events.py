"""What happens to containers and engines, and which engine events mean which domain event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from worpen_core.containers.model import WORKLOAD_LABEL, EngineEvent
from worpen_core.events.model import Event


@dataclass(frozen=True, slots=True)
class ContainerEvent(Event):
    """Something a node's Docker engine reported about one of its containers."""

    node: str
    container_id: str
    name: str
    image: str
    at: datetime

    @property
    def subject(self) -> str:
        return f"{self.node}/{self.name or self.container_id[:12]}"


@dataclass(frozen=True, slots=True)
class ContainerStarted(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ContainerStopped(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ContainerDied(ContainerEvent):
    exit_code: int | None
    requested: bool = False
    """Someone asked it to stop (a stop or restart, through Worpen or the docker CLI): not a failure."""


@dataclass(frozen=True, slots=True)
class ContainerOomKilled(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ContainerHealthChanged(ContainerEvent):
    health: str
    """HEALTHY, UNHEALTHY or STARTING."""


@dataclass(frozen=True, slots=True)
class ContainerRemoved(ContainerEvent):
    pass


@dataclass(frozen=True, slots=True)
class ImagePulled(Event):
    node: str
    image: str
    at: datetime

    @property
    def subject(self) -> str:
        return f"{self.node}/{self.image}"


@dataclass(frozen=True, slots=True)
class EngineUnavailable(Event):
    """Worpen lost a node's Docker engine (and keeps retrying)."""

    node: str
    detail: str
    at: datetime

    @property
    def subject(self) -> str:
        return self.node


@dataclass(frozen=True, slots=True)
class EngineAvailable(Event):
    """Worpen reached a node's Docker engine (again)."""

    node: str
    at: datetime

    @property
    def subject(self) -> str:
        return self.node


ENGINE_EVENT_TYPES = frozenset(
    kind.__name__
    for kind in (
        ContainerStarted,
        ContainerStopped,
        ContainerDied,
        ContainerOomKilled,
        ContainerHealthChanged,
        ContainerRemoved,
        ImagePulled,
    )
)
"""The journal's types of the events an engine's stream becomes."""

SIGKILL = frozenset({"9", "KILL", "SIGKILL"})


class StopRequests:
    """Which deaths were asked for. Docker reports a stop or a restart as a `kill` event with the stop
    signal, then the death; a crash dies with no `kill` before it, and `docker kill` and the OOM killer
    kill with SIGKILL. So a death after a kill with another signal, since the container last started, was
    requested."""

    def __init__(self) -> None:
        self._stopping: set[str] = set()

    def observe(self, raw: EngineEvent) -> bool:
        """Take in one engine event; whether it is a death that was asked for."""
        if raw.type != "container":
            return False
        match raw.action:
            case "kill" if raw.attributes.get("signal", "") not in SIGKILL:
                self._stopping.add(raw.actor_id)
            case "die":
                if raw.actor_id in self._stopping:
                    self._stopping.discard(raw.actor_id)
                    return True
            case "start" | "destroy":
                self._stopping.discard(raw.actor_id)
        return False


HEALTH_OF = {"healthy": "HEALTHY", "unhealthy": "UNHEALTHY", "starting": "STARTING"}


def domain_event(node: str, raw: EngineEvent, requested: bool = False) -> ContainerEvent | ImagePulled | None:
    """The domain event an engine event means, if any; `requested` says a death was asked for (see
    StopRequests)."""
    at = datetime.fromtimestamp(raw.time_nanos / 1e9, tz=UTC)
    if raw.type == "image" and raw.action == "pull":
        return ImagePulled(node, raw.actor_id, at)
    if raw.type != "container" or WORKLOAD_LABEL in raw.attributes:
        return None
    name = raw.attributes.get("name", "")
    image = raw.attributes.get("image", "")
    common = (node, raw.actor_id, name, image, at)
    match raw.action.partition(":"):
        case ("start", _, _):
            return ContainerStarted(*common)
        case ("stop", _, _):
            return ContainerStopped(*common)
        case ("die", _, _):
            code = raw.attributes.get("exitCode", "")
            return ContainerDied(*common, int(code) if code.lstrip("-").isdigit() else None, requested)
        case ("oom", _, _):
            return ContainerOomKilled(*common)
        case ("health_status", _, health) if health.strip() in HEALTH_OF:
            return ContainerHealthChanged(*common, HEALTH_OF[health.strip()])
        case ("destroy", _, _):
            return ContainerRemoved(*common)
    return None
