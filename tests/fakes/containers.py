"""A container engine and its terminals, in memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

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
        raise NotImplementedError

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


class FakeTerminal:
    async def read(self) -> bytes:
        return b""

    async def write(self, data: bytes) -> None:
        return None

    async def close(self) -> None:
        return None
