"""The Docker Engine API's JSON as core models.

Shared by the two ways Worpen reaches an engine: directly (docker/runtime.py) and through a node's agent,
which answers with the engine's own JSON (agent/runtime.py). Pure functions: no I/O, no SDK.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerState,
    ContainerUsage,
    EngineEvent,
    EngineInfo,
    Health,
    HealthCheckResult,
    Image,
    ImageLayer,
    LogLine,
    LogStream,
    Mount,
    PortBinding,
    Pruned,
    PruneReport,
    PruneRequest,
    PullProgress,
)
from worpen_core.shared.errors import EngineFailed

SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
REDACTED = "********"
NEVER = "0001-01-01T00:00:00Z"
_HEALTH_IN_STATUS = (
    ("(healthy)", Health.HEALTHY),
    ("(unhealthy)", Health.UNHEALTHY),
    ("(health: starting)", Health.STARTING),
)

Json = Mapping[str, Any]


class _Port(msgspec.Struct):
    PrivatePort: int
    Type: str = "tcp"
    PublicPort: int | None = None


class _Summary(msgspec.Struct):
    """The fields of the engine's container list that Worpen uses."""

    Id: str
    Image: str = ""
    Created: int = 0
    State: str = ""
    Status: str = ""
    Names: list[str] | None = None
    Ports: list[_Port] | None = None
    Labels: dict[str, str] | None = None


_SUMMARIES = msgspec.json.Decoder(list[_Summary])


def containers(content: bytes, node: str) -> list[Container]:
    """GET /containers/json, decoded by msgspec into just the fields used: the SDK's `containers()` costs
    about a millisecond more per call for 50 containers (requests' JSON decoding of every field).
    Raises msgspec.DecodeError when `content` is not such a list."""
    return [_container(item, node) for item in _SUMMARIES.decode(content)]


def _container(item: _Summary, node: str) -> Container:
    status = item.Status
    ports = (
        _sorted_ports({PortBinding(p.PrivatePort, p.Type, p.PublicPort) for p in item.Ports})
        if item.Ports
        else ()
    )
    health = Health.NONE
    if status.endswith(")"):
        health = next((h for text, h in _HEALTH_IN_STATUS if status.endswith(text)), Health.NONE)
    return Container(
        id=item.Id,
        name=item.Names[0].removeprefix("/") if item.Names else "",
        image=item.Image,
        state=_state(item.State),
        status=status,
        node=node,
        created_at=datetime.fromtimestamp(item.Created, tz=UTC),
        ports=ports,
        labels=item.Labels or {},
        health=health,
    )


def detail(raw: Json, node: str) -> ContainerDetail:
    """GET /containers/{ref}/json."""
    state = raw.get("State") or {}
    config = raw.get("Config") or {}
    host = raw.get("HostConfig") or {}
    network = raw.get("NetworkSettings") or {}
    health = state.get("Health") or {}
    restart = host.get("RestartPolicy") or {}
    ports = {
        PortBinding(int(spec.split("/")[0]), spec.partition("/")[2] or "tcp", _int(b.get("HostPort")))
        for spec, bindings in (network.get("Ports") or {}).items()
        for b in (bindings or [{}])
    }
    started, finished = _time(state.get("StartedAt")), _time(state.get("FinishedAt"))
    container_state = _state(str(state.get("Status", "")))
    container = Container(
        id=raw["Id"],
        name=str(raw.get("Name", "")).removeprefix("/"),
        image=str(config.get("Image", "")),
        state=container_state,
        status=_human_status(container_state, state, started, finished),
        node=node,
        created_at=_time(raw.get("Created")) or datetime.fromtimestamp(0, tz=UTC),
        ports=_sorted_ports(ports),
        labels=dict(config.get("Labels") or {}),
        health=Health(str(health["Status"]).upper()) if health.get("Status") else Health.NONE,
    )
    restart_name = str(restart.get("Name") or "no")
    retries = int(restart.get("MaximumRetryCount") or 0)
    return ContainerDetail(
        container=container,
        command=tuple(config.get("Cmd") or ()),
        entrypoint=tuple(config.get("Entrypoint") or ()),
        env=dict(_redacted(item) for item in config.get("Env") or ()),
        working_dir=str(config.get("WorkingDir") or ""),
        user=str(config.get("User") or ""),
        hostname=str(config.get("Hostname") or ""),
        restart_policy=f"{restart_name}:{retries}" if retries else restart_name,
        mounts=tuple(
            Mount(
                type=str(m.get("Type", "")),
                source=str(m.get("Source", "")),
                destination=str(m.get("Destination", "")),
                read_write=bool(m.get("RW", True)),
                mode=str(m.get("Mode", "")),
            )
            for m in raw.get("Mounts") or ()
        ),
        networks={
            name: str(net.get("IPAddress") or "") for name, net in (network.get("Networks") or {}).items()
        },
        restart_count=int(raw.get("RestartCount") or 0),
        exit_code=None if container_state is ContainerState.CREATED else int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        pid=int(state["Pid"]) if state.get("Pid") else None,
        started_at=started,
        finished_at=finished,
        health_log=tuple(
            HealthCheckResult(
                start=_time(entry.get("Start")),
                end=_time(entry.get("End")),
                exit_code=int(entry.get("ExitCode") or 0),
                output=str(entry.get("Output") or ""),
            )
            for entry in health.get("Log") or ()
        ),
    )


def usage(raw: Json) -> ContainerUsage:
    """GET /containers/{ref}/stats?stream=0&one-shot=1."""
    cpu = raw.get("cpu_stats") or {}
    memory = raw.get("memory_stats") or {}
    return ContainerUsage(
        cpu_nanos=_int((cpu.get("cpu_usage") or {}).get("total_usage")) or 0,
        system_nanos=_int(cpu.get("system_cpu_usage")) or 0,
        online_cpus=_int(cpu.get("online_cpus")) or 1,
        memory_bytes=_int(memory.get("usage")),
    )


def engine_info(version: Json, info: Json) -> EngineInfo:
    """GET /version and GET /info."""
    return EngineInfo(
        version=str(version.get("Version", "")),
        api_version=str(version.get("ApiVersion", "")),
        os=f"{version.get('Os', '')}/{version.get('Arch', '')}",
        containers=int(info.get("Containers", 0)),
        images=int(info.get("Images", 0)),
    )


def images(
    summaries: Sequence[Json],
    listed: Sequence[Json],
    histories: Mapping[str, Sequence[Json]],
    node: str,
) -> list[Image]:
    """GET /images/json, one entry per tag, with how many of the containers `listed` (GET
    /containers/json?all=1) use each image and its layers from `histories` (GET /images/{id}/history by
    image id; an image without one has no layers)."""
    users = Counter(str(c.get("ImageID", "")) for c in listed)
    result: list[Image] = []
    for summary in summaries:
        layers = tuple(
            ImageLayer(
                hash=str(step.get("Id", "<missing>")),
                instruction=str(step.get("CreatedBy", "")),
                size=int(step.get("Size") or 0),
            )
            for step in histories.get(summary["Id"], ())
        )
        for name, tag in _tags(summary):
            result.append(
                Image(
                    id=summary["Id"],
                    name=name,
                    tag=tag,
                    total_size=int(summary.get("Size") or 0),
                    node=node,
                    containers=users[summary["Id"]],
                    created_at=datetime.fromtimestamp(int(summary.get("Created") or 0), tz=UTC),
                    layers=layers,
                )
            )
    return result


def prune_report(containers: Json, images: Json, networks: Json, builds: Json, node: str) -> PruneReport:
    """What the engine's prunes removed: POST /containers/prune, /images/prune, /networks/prune and
    /build/prune."""
    return PruneReport(
        node=node,
        dry_run=False,
        containers=Pruned(
            tuple(containers.get("ContainersDeleted") or ()), int(containers.get("SpaceReclaimed") or 0)
        ),
        images=Pruned(
            tuple(
                entry.get("Deleted") or entry.get("Untagged", "")
                for entry in images.get("ImagesDeleted") or ()
            ),
            int(images.get("SpaceReclaimed") or 0),
        ),
        networks=Pruned(tuple(networks.get("NetworksDeleted") or ()), 0),
        build_cache=Pruned(tuple(builds.get("CachesDeleted") or ()), int(builds.get("SpaceReclaimed") or 0)),
    )


def prune_plan(df: Json, networks: Sequence[Json], request: PruneRequest, node: str) -> PruneReport:
    """What a prune would remove, worked out as the engine does from GET /system/df and GET /networks,
    without removing anything."""
    stopped = [c for c in df.get("Containers") or () if c.get("State") in ("exited", "created", "dead")]
    kept = [c for c in df.get("Containers") or () if c not in stopped]
    used_images = {c.get("ImageID") for c in kept}
    unused_images = [
        i
        for i in df.get("Images") or ()
        if i["Id"] not in used_images
        and (request.all or not i.get("RepoTags") or i.get("RepoTags") == ["<none>:<none>"])
    ]
    in_use_networks = {
        name for c in kept for name in ((c.get("NetworkSettings") or {}).get("Networks") or {})
    }
    unused_networks = [
        n
        for n in networks
        if n.get("Name") not in ("bridge", "host", "none", *in_use_networks)
        and not (n.get("Labels") or {}).get("com.docker.swarm.internal")
    ]
    caches = [
        b for b in df.get("BuildCache") or () if not b.get("InUse") and (request.all or not b.get("Shared"))
    ]
    return PruneReport(
        node=node,
        dry_run=True,
        containers=Pruned(tuple(c["Id"] for c in stopped), sum(int(c.get("SizeRw") or 0) for c in stopped)),
        images=Pruned(
            tuple(i["Id"] for i in unused_images),
            sum(int(i.get("Size") or 0) - int(i.get("SharedSize") or 0) for i in unused_images),
        ),
        networks=Pruned(tuple(n["Id"] for n in unused_networks), 0),
        build_cache=Pruned(tuple(b["ID"] for b in caches), sum(int(b.get("Size") or 0) for b in caches)),
    )


def event(raw: Json) -> EngineEvent:
    """One message of GET /events."""
    actor = raw.get("Actor") or {}
    return EngineEvent(
        type=str(raw.get("Type", "")),
        action=str(raw.get("Action", "")),
        actor_id=str(actor.get("ID", "")),
        attributes={str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()},
        time_nanos=int(raw.get("timeNano") or int(raw.get("time", 0)) * 10**9),
    )


def pull_progress(message: Json, registry: str) -> PullProgress:
    """One progress message of POST /images/create; an error message raises EngineFailed naming the
    `registry`, since the engine reports a failed pull (unknown image, registry unreachable) that way."""
    if message.get("error"):
        raise EngineFailed(registry, str(message["error"]))
    progress = message.get("progressDetail") or {}
    return PullProgress(
        status=str(message.get("status", "")),
        layer=message.get("id"),
        current=progress.get("current"),
        total=progress.get("total"),
    )


def log_stream(kind: int) -> LogStream:
    """The engine's stream type of a log frame (1 stdout, 2 stderr)."""
    return LogStream.STDERR if kind == 2 else LogStream.STDOUT


class LogParser:
    """Docker's log stream: 8-byte frame headers (stream, size) unless the container has a TTY; each
    line starts with its RFC 3339 timestamp (we always ask for them)."""

    def __init__(self) -> None:
        self._buffer = b""
        self._framed: bool | None = None
        self._partial: dict[LogStream, bytes] = {LogStream.STDOUT: b"", LogStream.STDERR: b""}

    def feed(self, chunk: bytes) -> list[LogLine]:
        self._buffer += chunk
        if self._framed is None:
            if len(self._buffer) < 8 and not self._buffer.endswith(b"\n"):
                return []
            head = self._buffer[:8]
            self._framed = len(head) == 8 and head[0] in (0, 1, 2) and head[1:4] == b"\0\0\0"
        lines: list[LogLine] = []
        if not self._framed:
            data, self._buffer = self._buffer, b""
            return self._lines(LogStream.STDOUT, data)
        while len(self._buffer) >= 8:
            size = int.from_bytes(self._buffer[4:8], "big")
            if len(self._buffer) < 8 + size:
                break
            stream = log_stream(self._buffer[0])
            payload = self._buffer[8 : 8 + size]
            self._buffer = self._buffer[8 + size :]
            lines.extend(self._lines(stream, payload))
        return lines

    def end(self) -> list[LogLine]:
        lines: list[LogLine] = []
        for stream, rest in self._partial.items():
            if rest:
                lines.append(log_line(stream, rest))
        self._partial = {stream: b"" for stream in self._partial}
        return lines

    def _lines(self, stream: LogStream, data: bytes) -> list[LogLine]:
        *complete, rest = (self._partial[stream] + data).split(b"\n")
        self._partial[stream] = rest
        return [log_line(stream, raw) for raw in complete]


def log_line(stream: LogStream, raw: bytes) -> LogLine:
    """One line of a log read with timestamps=1, without its newline: "<RFC 3339 nano> text"."""
    stamp, _, text = raw.partition(b" ")
    return LogLine(stream, text.decode("utf-8", "replace").removesuffix("\r"), _log_time(stamp))


def _log_time(stamp: bytes) -> datetime | None:
    """A log line's timestamp: the engine writes UTC with nanoseconds (30 characters), parsed here
    without the general case's string work, which showed in profiles of `logs?tail=100`."""
    if len(stamp) == 30 and stamp.endswith(b"Z"):
        try:
            return datetime.fromisoformat(stamp[:26].decode()).replace(tzinfo=UTC)
        except ValueError:
            return None
    return _time(stamp.decode("ascii", "replace"))


_STATES = {state.value.lower(): state for state in ContainerState}


def _state(raw: str) -> ContainerState:
    return _STATES.get(raw.lower(), ContainerState.DEAD)


def _sorted_ports(ports: set[PortBinding]) -> tuple[PortBinding, ...]:
    return tuple(sorted(ports, key=lambda p: (p.private, p.protocol, p.public or 0)))


def _int(raw: object) -> int | None:
    return int(raw) if isinstance(raw, str | int) and str(raw).isdigit() else None


def _time(raw: object) -> datetime | None:
    """Docker's RFC 3339 times with nanoseconds; None for its zero time or anything unreadable."""
    if not isinstance(raw, str) or not raw or raw == NEVER:
        return None
    main, _, fraction = raw.rstrip("Z").partition(".")
    zone = "+00:00"
    for sign in "+-":
        if sign in fraction:
            fraction, _, offset = fraction.partition(sign)
            zone = sign + offset
    try:
        parsed = datetime.fromisoformat(f"{main}.{(fraction or '0')[:6]:0<6}{zone}")
    except ValueError:
        return None
    return None if parsed.year == 1 else parsed.astimezone(UTC)


def _redacted(item: str) -> tuple[str, str]:
    name, _, value = item.partition("=")
    return name, REDACTED if SECRET_NAME.search(name) else value


def _tags(summary: Json) -> list[tuple[str, str]]:
    tags = [t for t in summary.get("RepoTags") or () if t != "<none>:<none>"]
    if not tags:
        return [("<none>", "<none>")]
    return [(name, tag) for name, _, tag in (t.rpartition(":") for t in tags)]


def _human_status(
    state: ContainerState, raw: Json, started: datetime | None, finished: datetime | None
) -> str:
    """The status text `docker ps` shows, from an inspect (which does not carry it)."""
    now = datetime.now(UTC)
    code = int(raw.get("ExitCode") or 0)
    if state is ContainerState.RUNNING and started is not None:
        return f"Up {_human(now - started)}"
    if state is ContainerState.PAUSED and started is not None:
        return f"Up {_human(now - started)} (Paused)"
    if state is ContainerState.RESTARTING and finished is not None:
        return f"Restarting ({code}) {_human(now - finished)} ago"
    if state is ContainerState.EXITED and finished is not None:
        return f"Exited ({code}) {_human(now - finished)} ago"
    return state.value.capitalize()


def _human(elapsed: timedelta) -> str:
    """go-units' HumanDuration, which docker uses for its status texts."""
    seconds = int(elapsed.total_seconds())
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = seconds // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"
