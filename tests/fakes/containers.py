"""A container engine and its terminals, in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence

from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerUsage,
    EngineEvent,
    EngineInfo,
    HealthCheckResult,
    Image,
    LogLine,
    LogQuery,
    PruneReport,
    PruneRequest,
    PullProgress,
    WorkloadSpec,
)
from worpen_core.containers.ports import TerminalChannel
from worpen_core.shared.errors import (
    Ambiguous,
    Conflict,
    NotFound,
    Unavailable,
)


def _detail(c: Container, health_log: tuple[HealthCheckResult, ...] = ()) -> ContainerDetail:
    return ContainerDetail(
        c, (), (), {}, "", "", "", "no", (), {}, 0, 0, False, "", None, None, None, health_log
    )


async def _stream(events: list[EngineEvent]) -> AsyncIterator[EngineEvent]:
    for event in events:
        yield event


class FakeRuntime:
    """An engine holding `held` containers, resolving references the way Docker does."""

    def __init__(self, node: str, held: Sequence[Container] = (), *, down: bool = False) -> None:
        self.node = node
        self.held = list(held)
        self.down = down
        self.started: list[str] = []
        self.listed = 0
        self.events_from: list[int | None] = []
        self.streams: list[list[EngineEvent]] = []
        self.pull_closed = False
        self.usages: dict[str, ContainerUsage] = {}
        """Each container's usage reading, by id (set by tests; none: zero)."""
        self.health_logs: dict[str, tuple[HealthCheckResult, ...]] = {}
        self.usage_calls = 0
        self.workloads: dict[str, WorkloadSpec] = {}
        """Containers created by `create`, by id, as asked for (until removed)."""
        self.exit_codes: dict[str, int] = {}
        """What `wait` returns, by container name (set by tests; none: 0)."""
        self.hold: asyncio.Event | None = None
        """When set by a test, `wait` returns only once this event is set."""
        self.volume_labels: dict[str, dict[str, str]] = {}
        self.archives: dict[tuple[str, str], bytes] = {}
        """Archives put into containers, by (container reference, path)."""
        self.missing_images: set[str] = set()
        """Images `create` does not find on this node."""

    def _check(self) -> None:
        if self.down:
            raise Unavailable(f"node {self.node} docker engine", "cannot connect")

    async def info(self) -> EngineInfo:
        self._check()
        return EngineInfo("1", "1.41", "linux", len(self.held), 0)

    async def list_containers(self) -> list[Container]:
        self.listed += 1
        self._check()
        return list(self.held)

    async def inspect(self, ref: str) -> ContainerDetail:
        self._check()
        exact = [c for c in self.held if ref in (c.id, c.name)]
        matches = exact or [c for c in self.held if c.id.startswith(ref)]
        if len(matches) > 1:
            raise Ambiguous(ref)
        if not matches:
            raise NotFound("container", ref)
        return _detail(matches[0], self.health_logs.get(matches[0].id, ()))

    async def usage(self, ref: str) -> ContainerUsage:
        self.usage_calls += 1
        self._check()
        return self.usages.get(ref, ContainerUsage(0, 0, 1))

    async def logs(self, ref: str, query: LogQuery) -> AsyncIterator[Sequence[LogLine]]:
        raise NotImplementedError

    async def start(self, ref: str) -> None:
        self._check()
        self.started.append(ref)

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        raise Conflict("the engine refuses")

    async def restart(self, ref: str, grace_seconds: int | None) -> None:
        raise NotImplementedError

    async def remove(self, ref: str, *, force: bool, volumes: bool) -> None:
        self._check()
        del self.workloads[self._workload(ref)]

    async def prune(self, request: PruneRequest) -> PruneReport:
        raise NotImplementedError

    async def list_images(self) -> list[Image]:
        raise NotImplementedError

    async def pull(self, image: str) -> AsyncIterator[PullProgress]:
        return self._stalling_pull()

    async def _stalling_pull(self) -> AsyncIterator[PullProgress]:
        """Starts, then hangs (like a registry that stops sending a layer)."""
        try:
            yield PullProgress("Downloading", "layer-1", 512, 4096)
            await asyncio.Event().wait()
        finally:
            self.pull_closed = True

    async def exec(self, ref: str, command: Sequence[str]) -> TerminalChannel:
        self._check()
        return FakeTerminal()

    async def events(self, since_nanos: int | None) -> AsyncIterator[EngineEvent]:
        self._check()
        self.events_from.append(since_nanos)
        batch = self.streams.pop(0) if self.streams else []
        return _stream(batch)

    async def create_volume(self, name: str, labels: Mapping[str, str]) -> None:
        self._check()
        if name in self.volume_labels:
            raise Conflict(f"volume {name} exists")
        self.volume_labels[name] = dict(labels)

    async def remove_volume(self, name: str) -> None:
        self._check()
        if name not in self.volume_labels:
            raise NotFound("volume", name)
        if any(spec.volume == name for spec in self.workloads.values()):
            raise Conflict(f"volume {name} is in use")
        del self.volume_labels[name]

    async def volumes(self, label: str) -> list[str]:
        self._check()
        key, has_value, value = label.partition("=")
        return sorted(
            name
            for name, labels in self.volume_labels.items()
            if key in labels and (not has_value or labels[key] == value)
        )

    async def create(self, spec: WorkloadSpec) -> str:
        self._check()
        if spec.image in self.missing_images:
            raise NotFound("image", spec.image)
        if any(created.name == spec.name for created in self.workloads.values()):
            raise Conflict(f"the name {spec.name} is taken")
        workload_id = f"{spec.name}-id"
        self.workloads[workload_id] = spec
        return workload_id

    async def put_archive(self, ref: str, path: str, archive: bytes) -> None:
        self._check()
        self._workload(ref)
        self.archives[(ref, path)] = archive

    async def wait(self, ref: str) -> int:
        self._check()
        name = self.workloads[self._workload(ref)].name
        if self.hold is not None:
            await self.hold.wait()
        return self.exit_codes.get(name, 0)

    def _workload(self, ref: str) -> str:
        """The id of the created container `ref` names (its id or its name)."""
        for workload_id, spec in self.workloads.items():
            if ref in (workload_id, spec.name):
                return workload_id
        raise NotFound("container", ref)


class FakeTerminal:
    async def read(self) -> bytes:
        return b""

    async def write(self, data: bytes) -> None:
        return None

    async def close(self) -> None:
        return None
