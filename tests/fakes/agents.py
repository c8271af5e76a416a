"""An agent's stream and the engine it serves, in memory (scripted answers, delays, refusals and
disconnects, with the deadlines the AgentLink port promises), and the agents' service wired on fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.agents.model import AgentHello, CommandRefused
from worpen_core.agents.ports import AgentLink, LogChunks
from worpen_core.agents.service import Agents, dependency
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.ports import ContainerRuntime
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.fleet.commands import RecordHeartbeat
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.readings import Readings
from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import TimedOut, Unavailable

ENGINE = "engine-1"
"""The one engine of the configuration (WORPEN_DOCKER_HOSTS) in `agent_world`."""

Output = bytes | LogChunks | None | BaseException
"""What a command stream yields next: output, its end (None), or what it ends with."""


class FakeCommandStream:
    """A streaming command the test drives: `feed` output, `finish` it or `fail` it."""

    def __init__(self, kind: str, params: Mapping[str, Any]) -> None:
        self.kind = kind
        self.params = dict(params)
        self.written: list[bytes] = []
        self.closed = False
        self._outputs: asyncio.Queue[Output] = asyncio.Queue()
        self._result: Any = None

    def feed(self, *chunks: bytes | LogChunks) -> None:
        for chunk in chunks:
            self._outputs.put_nowait(chunk)

    def finish(self, result: Any = None) -> None:
        self._result = result
        self._outputs.put_nowait(None)

    def fail(self, error: BaseException) -> None:
        self._outputs.put_nowait(error)

    async def next(self) -> bytes | LogChunks | None:
        output = await self._outputs.get()
        if isinstance(output, BaseException):
            raise output
        return output

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise Unavailable("command stream", "closed")
        self.written.append(data)

    def result(self) -> Any:
        return self._result

    async def close(self) -> None:
        self.closed = True


class FakeAgentLink:
    """One agent's stream. Each command kind answers `answers[kind]` (None when unset) after
    `delays[kind]` seconds, or raises `refusals[kind]`; `disconnect` makes every pending and later
    command fail with Unavailable, as a stream that went away does."""

    def __init__(
        self,
        agent_id: str,
        capabilities: Iterable[str] = (),
        labels: Mapping[str, str] | None = None,
        version: str = "1.0.0",
    ) -> None:
        self.hello = AgentHello(agent_id, version, 1, frozenset(capabilities), dict(labels or {}))
        self.answers: dict[str, Any] = {}
        self.delays: dict[str, float] = {}
        self.refusals: dict[str, CommandRefused] = {}
        self.calls: list[tuple[str, dict[str, Any], bytes]] = []
        self.streams: list[FakeCommandStream] = []
        self.close_reason: str | None = None
        self._gone = asyncio.Event()

    @property
    def open(self) -> bool:
        return not self._gone.is_set()

    def disconnect(self) -> None:
        self._gone.set()
        for stream in self.streams:
            stream.fail(self._lost())

    async def call(
        self, kind: str, params: Mapping[str, Any], *, data: bytes = b"", timeout: float | None
    ) -> Any:
        self.calls.append((kind, dict(params), data))
        await self._answer(kind, timeout)
        return self.answers.get(kind)

    async def stream(self, kind: str, params: Mapping[str, Any], *, timeout: float) -> FakeCommandStream:
        self.calls.append((kind, dict(params), b""))
        await self._answer(kind, timeout)
        stream = FakeCommandStream(kind, params)
        self.streams.append(stream)
        return stream

    async def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self.disconnect()

    async def _answer(self, kind: str, timeout: float | None) -> None:
        """Wait for the agent's answer to `kind` as the port says: TimedOut past `timeout`, Unavailable
        when the stream goes away first, CommandRefused when the agent refuses."""
        if not self.open:
            raise self._lost()
        try:
            async with asyncio.timeout(timeout):
                try:
                    await asyncio.wait_for(self._gone.wait(), self.delays.get(kind, 0))
                except TimeoutError:
                    pass
                else:
                    raise self._lost()
        except TimeoutError:
            raise TimedOut(f"node {self.hello.id} agent: {kind} got no answer within {timeout:g} s") from None
        refusal = self.refusals.get(kind)
        if refusal is not None:
            raise refusal

    def _lost(self) -> Unavailable:
        return Unavailable(dependency(self.hello.id), "the agent went away")


class FakeAgentRuntime(FakeRuntime):
    """The engine of an agent's node as the server drives it: through `link`, listing from the inventory
    taken at `taken_at` (Inventoried)."""

    def __init__(self, link: AgentLink, taken_at: datetime | None = None) -> None:
        super().__init__(link.hello.id)
        self.link = link
        self.taken_at = taken_at

    def inventory_taken_at(self) -> datetime | None:
        return self.taken_at


@dataclass
class AgentWorld:
    agents: Agents
    containers: Containers
    fleet: Fleet
    audit: AuditTrail
    engine: FakeRuntime

    async def heard_from(self, agent_id: str) -> None:
        """The agent is known to the fleet: it sent a heartbeat once."""
        await self.fleet.record_heartbeat(RecordHeartbeat(agent_id, Readings(10, 20)))


def agent_world(
    uow: FakeUnitOfWorkFactory,
    clock: FakeClock,
    bus: FakeEventBus,
    limits: ContainerLimits | None = None,
    engine: FakeRuntime | None = None,
    runtime_for: Callable[[AgentLink], ContainerRuntime] = FakeAgentRuntime,
) -> AgentWorld:
    """Agents whose engines are served as `runtime_for` makes them, beside the configured engine `ENGINE`
    (`engine`, or a FakeRuntime)."""
    audit = AuditTrail(uow, clock, bus)
    engine = engine or FakeRuntime(ENGINE)
    containers = Containers([engine], audit, clock, bus, limits or ContainerLimits())
    fleet = Fleet(uow, bus, clock, FleetPolicy())
    agents = Agents(containers, fleet, clock, runtime_for, command_timeout=5)
    return AgentWorld(agents, containers, fleet, audit, engine)
