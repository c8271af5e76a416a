"""The agents connected over the command channel: one stream per agent, their engines served as the
fleet's container nodes, SYNC, and shells on their nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from worpen_core.access.model import Principal
from worpen_core.agents.model import DOCKER, SHELL, AgentHello, CommandRefused, Connection, SyncReport
from worpen_core.agents.ports import AgentLink
from worpen_core.agents.terminal import CommandTerminal
from worpen_core.containers.ports import ContainerRuntime, TerminalChannel
from worpen_core.containers.service import Containers, SessionTarget, TerminalSession
from worpen_core.events.model import Event
from worpen_core.fleet.events import AgentWentOffline
from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import Conflict, Forbidden, NotFound, Unavailable, WorpenError
from worpen_core.shared.ports import Clock

REPLACED = "replaced by a newer connection of the same agent"
SILENT = "no heartbeat within the agent TTL: the stream is taken for dead (the agent reconnects)"


def dependency(agent_id: str) -> str:
    """How errors name an agent's node when it cannot be reached (503 bodies, gRPC details)."""
    return f"node {agent_id} agent"


class Agents:
    def __init__(
        self,
        containers: Containers,
        fleet: Fleet,
        clock: Clock,
        runtime_for: Callable[[AgentLink], ContainerRuntime],
        *,
        command_timeout: float,
    ) -> None:
        """`runtime_for` makes the container runtime that drives an agent's engine through its link."""
        self._containers = containers
        self._fleet = fleet
        self._clock = clock
        self._runtime_for = runtime_for
        self.command_timeout = command_timeout
        self._links: dict[str, AgentLink] = {}
        self._connections: dict[str, Connection] = {}

    async def attach(self, link: AgentLink, peer: str) -> None:
        """Take a new stream as its agent's one connection: a previous stream of the same agent is closed
        (a restarted agent never leaves a ghost), and its engine becomes the node's runtime."""
        hello = link.hello
        if self._containers.serves_directly(hello.id):
            raise Conflict(
                f"node {hello.id} is a Docker engine of this server's configuration (WORPEN_DOCKER_HOSTS): "
                "an agent cannot take its name"
            )
        previous = self._links.get(hello.id)
        self._links[hello.id] = link
        self._connections[hello.id] = Connection(hello, peer, self._clock.now())
        if hello.can(DOCKER):
            self._containers.attach(self._runtime_for(link), hello.labels)
        if previous is not None and previous is not link:
            await previous.close(REPLACED)

    def detach(self, link: AgentLink) -> None:
        """Forget a stream that ended, unless a newer one of the same agent replaced it already."""
        agent_id = link.hello.id
        if self._links.get(agent_id) is link:
            del self._links[agent_id]
            del self._connections[agent_id]

    async def observe(self, event: Event) -> None:
        """A connected agent that went OFFLINE (no heartbeat within the TTL, e.g. a partition or a stopped
        process whose connection still looks open) loses its stream: commands to it then fail at once
        (503) instead of waiting for their deadline, and the agent reconnects when it can."""
        if isinstance(event, AgentWentOffline):
            link = self._links.get(event.agent_id)
            if link is not None:
                self.detach(link)
                await link.close(SILENT)

    def connection(self, agent_id: str) -> Connection | None:
        return self._connections.get(agent_id)

    def connections(self) -> list[Connection]:
        return sorted(self._connections.values(), key=lambda c: c.hello.id)

    def hello(self, agent_id: str) -> AgentHello | None:
        connection = self._connections.get(agent_id)
        return None if connection is None else connection.hello

    async def sync(self, target: str | None, timeout: float) -> SyncReport:  # noqa: ASYNC109 (sent along)
        """Ask every connected agent (or `target`) to send its inventory and a heartbeat now; report who
        acknowledged within `timeout` seconds. A target that is known but not connected is missing."""
        if target is not None:
            if target not in self._links:
                self._fleet.get(target)  # NotFound for an agent never seen
                return SyncReport(agents=1, acknowledged=0, missing=(target,))
            links = [self._links[target]]
        else:
            links = list(self._links.values())
        results = await asyncio.gather(
            *(link.call("sync", {}, timeout=timeout) for link in links), return_exceptions=True
        )
        missing = tuple(
            sorted(
                link.hello.id
                for link, result in zip(links, results, strict=True)
                if isinstance(result, BaseException)
            )
        )
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, WorpenError | CommandRefused):
                raise result
        return SyncReport(agents=len(links), acknowledged=len(links) - len(missing), missing=missing)

    async def open_shell(
        self, principal: Principal, agent_id: str, command: Sequence[str]
    ) -> TerminalSession:
        """A PTY shell on the agent's node, through its stream: only on agents started with --allow-shell
        (Forbidden otherwise), within the terminal limits, audited as `agent.shell`."""

        async def target() -> SessionTarget:
            link = self._links.get(agent_id)
            if link is None:
                self._fleet.get(agent_id)  # NotFound for an agent never seen
                raise Unavailable(dependency(agent_id), "the agent is not connected")
            if not link.hello.can(SHELL):
                raise Forbidden(
                    f"agent {agent_id} was not started with --allow-shell: it opens no shell on its node"
                )

            async def opener() -> TerminalChannel:
                try:
                    stream = await link.stream(
                        "shell.open", {"command": list(command)}, timeout=self.command_timeout
                    )
                except CommandRefused as exc:
                    raise _refusal(agent_id, exc) from exc
                return CommandTerminal(stream)

            return agent_id, agent_id, "node shell", f"node shell ({agent_id})", opener

        return await self._containers.open_session(principal, "agent.shell", command, target)


def _refusal(agent_id: str, exc: CommandRefused) -> WorpenError:
    if exc.code == "forbidden":
        return Forbidden(f"agent {agent_id}: {exc.message}")
    if exc.code == "not_found":
        return NotFound("shell", exc.message)
    return Unavailable(dependency(agent_id), exc.message)
