"""ContainerRuntime on a node's Docker engine, driven through the node's worpen-agent (agent.proto).

Every call is a command over the agent's one stream, with a deadline; the agent answers with the Engine
API's own JSON, mapped by the same code as a direct engine's (docker/mapping.py). The container list is
served from the inventory the agent sends (after it connects, after a SYNC, and shortly after container
events), so that listing many nodes costs no round trip. Engine events arrive on the stream as well, fed
in by the gRPC servicer, which also tells the runtime when the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from worpen_core.agents.model import CommandRefused
from worpen_core.agents.ports import AgentLink, CommandStream, LogChunks
from worpen_core.agents.service import dependency
from worpen_core.agents.terminal import CommandTerminal
from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerUsage,
    EngineEvent,
    EngineInfo,
    Image,
    LogLine,
    LogQuery,
    PruneReport,
    PruneRequest,
    PullProgress,
    WorkloadSpec,
)
from worpen_core.shared.errors import (
    Ambiguous,
    Conflict,
    EngineFailed,
    Forbidden,
    InvalidInput,
    NotFound,
    TimedOut,
    Unavailable,
    WorpenError,
)
from worpen_infra.docker import mapping
from worpen_infra.docker.runtime import ARCHIVE_BYTES_PER_SECOND

EVENT_BACKLOG = 10_000
"""Events kept for a reader of `events()` that falls behind; past that it loses them, and is told so."""
FRESHNESS_WAIT = 2.0
"""How long a listing waits, after a change of the node's containers, for the inventory the agent sends
shortly after one (it debounces them by about half a second)."""
DEFAULT_GRACE = 10
"""The engine's grace period of a stop that names none (for the deadline of the command)."""
PRUNES = 4
"""The prunes of a system.prune (containers, images, networks, build cache): each may walk the whole
engine's storage, so each gets twice the timeout, as on a direct engine."""
LISTED_CHANGES = frozenset(
    {"create", "start", "restart", "die", "destroy", "pause", "unpause", "rename", "update", "health_status"}
)
"""Actions of container events that change what the container list shows (health is in its status;
"health_status: healthy" is the action of a health change)."""


class AgentContainerRuntime:
    def __init__(self, link: AgentLink, *, timeout: float) -> None:
        self.node = link.hello.id
        self._link = link
        self._timeout = timeout
        self._dependency = dependency(self.node)
        self._containers: list[Container] | None = None
        self._containers_json = b"[]"
        """The inventory's containers as the agent sent them (what the relay hands other replicas)."""
        self._taken_at: datetime | None = None
        self._taken_nanos = 0
        self._changed_nanos = 0
        """When the newest container event that changes the list happened (the agent's clock)."""
        self._acted = False
        """Whether a command of this runtime changed the containers since the last inventory."""
        self._fresh_by = 0.0
        """Until when (time.monotonic) a listing waits for an inventory newer than a change."""
        self._arrival = asyncio.Event()
        """Set (and replaced) when an inventory arrives or the stream ends."""
        self._readers: set[_Reader] = set()
        self._gone: str | None = None

    # ---- fed by the gRPC servicer as the agent's messages arrive ----

    def take_inventory(self, containers_json: bytes, images_json: bytes, taken_at: datetime) -> None:
        """The node's inventory (Inventory in agent.proto), listed from now on. Its images are not kept:
        an image listing needs each image's layers, which only the images.list command brings. Raises
        InvalidInput when the containers are not the engine's container list."""
        try:
            containers = mapping.containers(containers_json, self.node)
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"{self._dependency} sent an unreadable inventory: {exc}") from exc
        if self._taken_at is not None and taken_at < self._taken_at:
            return  # taken before the one already listed, sent after it
        self._containers = containers
        self._containers_json = containers_json
        self._taken_at = taken_at
        self._taken_nanos = int(taken_at.timestamp() * 1e9)
        self._acted = False
        self._wake()

    def take_event(self, event_json: bytes) -> None:
        """One engine event (EngineEvent in agent.proto): handed to the readers of `events()`; a change of
        a container tells listings to wait briefly for the inventory that follows it. Raises InvalidInput
        when it is not an engine event."""
        try:
            raw = json.loads(event_json)
            event = mapping.event(raw)
        except (ValueError, TypeError, AttributeError) as exc:
            raise InvalidInput(f"{self._dependency} sent an unreadable engine event: {exc}") from exc
        if (
            event.type == "container"
            and event.action.partition(":")[0] in LISTED_CHANGES
            and event.time_nanos >= self._taken_nanos
        ):
            self._changed_nanos = max(self._changed_nanos, event.time_nanos)
            self._expect_inventory()
        for reader in self._readers:
            reader.put(event)

    def inventory_taken_at(self) -> datetime | None:
        return self._taken_at

    def disconnected(self, reason: str) -> None:
        """The agent's stream ended: calls fail at once with Unavailable, and so do `events()` readers
        once they have read what arrived before."""
        self._gone = f"the agent disconnected ({reason})" if reason else "the agent disconnected"
        self._wake()
        for reader in self._readers:
            reader.wake()

    # ---- ContainerRuntime ----

    async def info(self) -> EngineInfo:
        kind = "engine.info"
        result = await self._call(kind, {}, within=self._timeout)
        return mapping.engine_info(self._part(result, "version", kind), self._part(result, "info", kind))

    async def list_containers(self) -> list[Container]:
        """From the last inventory. Before the first one, wait for it (up to the timeout); after a change,
        wait briefly for the inventory that shows it (see FRESHNESS_WAIT), else list the last one."""
        first_by = time.monotonic() + self._timeout
        while self._gone is None:
            if self._containers is None:
                deadline = first_by
            elif self._stale():
                deadline = self._fresh_by
            else:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            arrival = self._arrival
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrival.wait(), remaining)
        self._check()
        if self._containers is None:
            raise Unavailable(self._dependency, f"no inventory from the agent within {self._timeout:g} s")
        return list(self._containers)

    async def inventory(self) -> tuple[bytes, datetime]:
        """The containers of the inventory `list_containers` would list now, as the agent sent them
        (Engine API JSON), and when it was taken: what another replica lists this node from."""
        await self.list_containers()
        assert self._taken_at is not None  # list_containers raised otherwise
        return self._containers_json, self._taken_at

    def acted_elsewhere(self) -> None:
        """A command relayed from another replica changed the containers: listings wait for the inventory
        that shows it, as after one of this runtime's own."""
        self._expect_inventory(acted=True)

    async def inspect(self, ref: str) -> ContainerDetail:
        raw = await self._call("containers.inspect", {"ref": ref}, ref=ref, within=self._timeout)
        return mapping.detail(raw, self.node)

    async def usage(self, ref: str) -> ContainerUsage:
        raw = await self._call("containers.stats", {"ref": ref}, ref=ref, within=self._timeout)
        return mapping.usage(raw)

    async def logs(self, ref: str, query: LogQuery) -> AsyncIterator[Sequence[LogLine]]:
        params = {
            "ref": ref,
            "tail": query.tail,
            "since": None if query.since is None else query.since.timestamp(),
            "stdout": query.stdout,
            "stderr": query.stderr,
            "follow": query.follow,
        }
        stream = await self._stream("containers.logs", params, ref=ref, within=self._timeout)
        return self._read_log(stream, ref)

    async def _read_log(self, stream: CommandStream, ref: str) -> AsyncIterator[Sequence[LogLine]]:
        """The log's batches as the agent sends them; left early, the command is cancelled on the agent."""
        try:
            while (output := await self._next(stream, "container", ref)) is not None:
                if isinstance(output, list) and output:
                    yield [mapping.log_line(mapping.log_stream(kind), line) for kind, line in output]
        finally:
            await stream.close()

    async def start(self, ref: str) -> None:
        await self._call("containers.start", {"ref": ref}, ref=ref, within=self._timeout)
        self._expect_inventory(acted=True)

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        grace = DEFAULT_GRACE if grace_seconds is None else grace_seconds
        params = {"ref": ref, "grace": grace_seconds}
        await self._call("containers.stop", params, ref=ref, within=self._timeout + grace)
        self._expect_inventory(acted=True)

    async def restart(self, ref: str, grace_seconds: int | None) -> None:
        grace = DEFAULT_GRACE if grace_seconds is None else grace_seconds
        params = {"ref": ref, "grace": grace_seconds}
        await self._call("containers.restart", params, ref=ref, within=self._timeout + grace)
        self._expect_inventory(acted=True)

    async def remove(self, ref: str, *, force: bool, volumes: bool) -> None:
        params = {"ref": ref, "force": force, "volumes": volumes}
        await self._call("containers.remove", params, ref=ref, within=self._timeout)
        self._expect_inventory(acted=True)

    async def prune(self, request: PruneRequest) -> PruneReport:
        if request.dry_run:
            kind = "system.df"
            result = await self._call(kind, {}, within=2 * self._timeout)
            df, networks = self._part(result, "df", kind), self._part(result, "networks", kind)
            return mapping.prune_plan(df, networks, request, self.node)
        kind = "system.prune"
        result = await self._call(kind, {"all": request.all}, within=PRUNES * 2 * self._timeout)
        self._expect_inventory(acted=True)
        return mapping.prune_report(
            self._part(result, "containers", kind),
            self._part(result, "images", kind),
            self._part(result, "networks", kind),
            self._part(result, "build", kind),
            self.node,
        )

    async def list_images(self) -> list[Image]:
        kind = "images.list"
        result = await self._call(kind, {}, within=2 * self._timeout)
        return mapping.images(
            self._part(result, "images", kind),
            self._part(result, "containers", kind),
            self._part(result, "histories", kind),
            self.node,
        )

    async def pull(self, image: str) -> AsyncIterator[PullProgress]:
        self._check()
        registry = f"registry of {image!r} (via node {self.node})"
        try:
            # Reaching a registry may legitimately take longer than an engine call.
            stream = await self._link.stream("images.pull", {"image": image}, timeout=3 * self._timeout)
        except CommandRefused as exc:
            raise self._pull_refused(exc, image, registry) from exc
        return self._progress(stream, image, registry)

    async def _progress(
        self, stream: CommandStream, image: str, registry: str
    ) -> AsyncIterator[PullProgress]:
        """The pull's progress; left before its end, the pull is cancelled on the agent."""
        try:
            while True:
                try:
                    output = await stream.next()
                except CommandRefused as exc:
                    raise self._pull_refused(exc, image, registry) from exc
                if output is None:
                    return
                if isinstance(output, bytes) and output:
                    try:
                        message = json.loads(output)
                    except ValueError as exc:
                        raise EngineFailed(self._dependency, f"unreadable pull progress: {exc}") from exc
                    yield mapping.pull_progress(message, registry)
        finally:
            await stream.close()

    async def exec(self, ref: str, command: Sequence[str]) -> CommandTerminal:
        params = {"ref": ref, "command": list(command)}
        return CommandTerminal(await self._stream("containers.exec", params, ref=ref, within=self._timeout))

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        """The engine events the agent sends from now on (none are kept for later readers), those before
        `since_nanos` skipped; raises Unavailable once the agent disconnected, or when the reader fell
        more than EVENT_BACKLOG events behind."""
        self._check()
        reader = _Reader()
        self._readers.add(reader)
        return self._read_events(reader, since_nanos or 0)

    async def _read_events(self, reader: _Reader, since_nanos: int) -> AsyncIterator[EngineEvent]:
        try:
            while True:
                if reader.queue.empty():
                    self._check()
                    if reader.lost:
                        raise Unavailable(
                            self._dependency,
                            f"{reader.lost} engine events were lost: their reader fell behind",
                        )
                event = await reader.queue.get()
                if event is not None and event.time_nanos >= since_nanos:
                    yield event
        finally:
            self._readers.discard(reader)

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        params = {"name": name, "labels": dict(labels)}
        try:
            await self._call("volumes.create", params, what="volume", ref=name, within=self._timeout)
        except Conflict as exc:
            raise Conflict(f"volume {name} exists on node {self.node}") from exc

    async def remove_volume(self, name: str) -> None:
        await self._call("volumes.remove", {"name": name}, what="volume", ref=name, within=self._timeout)

    async def volumes(self, label: str) -> list[str]:
        kind = "volumes.list"
        result = await self._call(kind, {"label": label}, within=self._timeout)
        return sorted(str(name) for name in self._part(result, "names", kind))

    async def create(self, spec: WorkloadSpec) -> str:
        # The agent builds the host config itself from these (never privileged, no host paths).
        params = {
            "name": spec.name,
            "image": spec.image,
            "command": list(spec.command),
            "env": dict(spec.env),
            "labels": dict(spec.labels),
            "volume": spec.volume,
            "mountPath": spec.mount_path,
        }
        kind = "workloads.create"
        result = await self._call(kind, params, what="image", ref=spec.image, within=self._timeout)
        self._expect_inventory(acted=True)
        return str(self._part(result, "id", kind))

    async def put_archive(self, ref: str, path: str, archive: bytes) -> None:
        self._check()
        timeout = self._timeout + len(archive) / ARCHIVE_BYTES_PER_SECOND
        params = {"ref": ref, "path": path}
        try:
            await self._link.call("containers.archive", params, data=archive, timeout=timeout)
        except CommandRefused as exc:
            if exc.code == "not_found" and "no such container" not in exc.message.lower():
                raise NotFound("path", f"{path} in container {ref}") from exc
            raise self._refused(exc, "container", ref) from exc

    async def wait(self, ref: str) -> int:
        """The exit code once the container is not running, however long that takes."""
        kind = "containers.wait"
        result = await self._call(kind, {"ref": ref}, ref=ref, within=None)
        return int(self._part(result, "exitCode", kind))

    # ---- commands ----

    async def _call(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        what: str = "container",
        ref: str = "",
        within: float | None,
    ) -> Any:
        """Run a command, waiting for its result `within` seconds (None: as long as it takes); the
        agent's refusal as a core error about `what` `ref` names."""
        self._check()
        try:
            return await self._link.call(kind, params, timeout=within)
        except CommandRefused as exc:
            raise self._refused(exc, what, ref) from exc

    async def _stream(
        self, kind: str, params: Mapping[str, Any], *, ref: str, within: float
    ) -> CommandStream:
        self._check()
        try:
            return await self._link.stream(kind, params, timeout=within)
        except CommandRefused as exc:
            raise self._refused(exc, "container", ref) from exc

    async def _next(self, stream: CommandStream, what: str, ref: str) -> bytes | LogChunks | None:
        try:
            return await stream.next()
        except CommandRefused as exc:
            raise self._refused(exc, what, ref) from exc

    def _refused(self, exc: CommandRefused, what: str, ref: str) -> WorpenError:
        """The agent's error code as the error a direct engine's answer would have given."""
        code, message = exc.code, exc.message
        if code == "not_found":
            return NotFound(what, ref) if ref else EngineFailed(self._dependency, message)
        if code == "ambiguous":
            return Ambiguous(ref) if ref else Conflict(message)
        if code == "conflict":
            return Conflict(message)
        if code == "invalid":
            return InvalidInput(message)
        if code == "unavailable":
            return Unavailable(self._dependency, message)
        if code == "timed_out":
            return TimedOut(f"{self._dependency}: {message}")
        if code == "forbidden":
            return Forbidden(f"{self._dependency}: {message}")
        if code == "engine_failed":
            return EngineFailed(self._dependency, message)
        return EngineFailed(self._dependency, f"{code}: {message}")

    def _pull_refused(self, exc: CommandRefused, image: str, registry: str) -> WorpenError:
        """A failed pull names the registry behind the engine, as on a direct engine."""
        if exc.code == "engine_failed":
            return EngineFailed(registry, exc.message)
        return self._refused(exc, "image", image)

    def _part(self, result: Any, key: str, kind: str) -> Any:
        """A part of a command's result, which is a JSON object (see agent.proto)."""
        if not isinstance(result, dict) or key not in result:
            raise EngineFailed(self._dependency, f"the agent's answer to {kind} has no {key!r}")
        return result[key]

    def _check(self) -> None:
        if self._gone is not None:
            raise Unavailable(self._dependency, self._gone)

    # ---- the inventory's freshness ----

    def _stale(self) -> bool:
        return self._acted or self._changed_nanos >= self._taken_nanos

    def _expect_inventory(self, *, acted: bool = False) -> None:
        """The containers changed: an inventory showing it is on its way."""
        self._acted = self._acted or acted
        self._fresh_by = time.monotonic() + min(FRESHNESS_WAIT, self._timeout)

    def _wake(self) -> None:
        self._arrival.set()
        self._arrival = asyncio.Event()


class _Reader:
    """One reader of `events()`: its bounded queue (None wakes it to look at the runtime)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[EngineEvent | None] = asyncio.Queue(EVENT_BACKLOG)
        self.lost = 0

    def put(self, event: EngineEvent) -> None:
        """Queue `event`; once one did not fit, the rest are lost too, so the reader never skips a gap
        without being told."""
        if self.lost:
            self.lost += 1
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.lost = 1

    def wake(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)
