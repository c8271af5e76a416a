"""The agents connected over the command channel: one stream per agent, their engines served as the
fleet's container nodes, SYNC, and shells on their nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from worpen_core.access.model import Principal
from worpen_core.agents.model import (
    DOCKER,
    SHELL,
    AgentHello,
    CommandRefused,
    Connection,
    StreamHolder,
    SyncReport,
)
from worpen_core.agents.ports import AgentLink, AgentRegistry
from worpen_core.agents.terminal import CommandTerminal
from worpen_core.containers.ports import ContainerRuntime, TerminalChannel
from worpen_core.containers.service import Containers, SessionTarget, TerminalSession
from worpen_core.events.model import Event
from worpen_core.fleet.events import AgentWentOffline
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import Conflict, Forbidden, NotFound, Unavailable, WorpenError
from worpen_core.shared.ports import Clock

REPLACED = "replaced by a newer connection of the same agent"
SILENT = "no heartbeat within the agent TTL: the stream is taken for dead (the agent reconnects)"
MOVED = "the agent's stream is held by another replica now"


def dependency(agent_id: str) -> str:
    """How errors name an agent's node when it cannot be reached (503 bodies, gRPC details)."""
    return f"node {agent_id} agent"


@dataclass(frozen=True, slots=True)
class Replicas:
    """This replica among others on one database: where it records the agents' streams it holds, and how
    it reaches the agents whose streams the others hold."""

    registry: AgentRegistry
    replica_id: str
    address: str
    """host:port at which the other replicas reach this one (see StreamHolder.address)."""
    relay: Callable[[StreamHolder], AgentLink]
    """A link to an agent through the replica that holds its stream."""
    runtime_for: Callable[[AgentLink], ContainerRuntime]
    """The container runtime of an agent's engine over such a link."""


class Agents:
    def __init__(
        self,
        containers: Containers,
        fleet: Fleet,
        clock: Clock,
        runtime_for: Callable[[AgentLink], ContainerRuntime],
        *,
        command_timeout: float,
        replicas: Replicas | None = None,
    ) -> None:
        """`runtime_for` makes the container runtime that drives an agent's engine through its link.
        `replicas` None: one replica alone, which knows only the streams it holds (no registry)."""
        self._containers = containers
        self._fleet = fleet
        self._clock = clock
        self._runtime_for = runtime_for
        self.command_timeout = command_timeout
        self._replicas = replicas
        self._links: dict[str, AgentLink] = {}
        self._connections: dict[str, Connection] = {}
        self._remote: dict[str, tuple[StreamHolder, AgentLink]] = {}
        """Agents whose streams other replicas hold, as the registry last said, with their relayed links."""
        self._unrecorded: set[str] = set()
        """Local streams the registry could not record when they attached (the refresh retries)."""
        self._released: list[StreamHolder] = []
        """Rows of local streams that ended, for the refresh to forget."""

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
        connection = Connection(hello, peer, self._clock.now())
        self._links[hello.id] = link
        self._connections[hello.id] = connection
        remote = self._remote.pop(hello.id, None)
        if hello.can(DOCKER):
            self._containers.attach(self._runtime_for(link), hello.labels)
        if previous is not None and previous is not link:
            await previous.close(REPLACED)
        if remote is not None:
            await remote[1].close(MOVED)
        if self._replicas is not None:
            await self._record(self._replicas, connection)

    async def _record(self, replicas: Replicas, connection: Connection) -> None:
        """Tell the other replicas that this one holds the stream; when the database cannot say so now,
        the stream still serves this replica and the refresh records it later."""
        agent_id = connection.hello.id
        try:
            await replicas.registry.record(StreamHolder(connection, replicas.replica_id, replicas.address))
        except WorpenError:
            self._unrecorded.add(agent_id)
        else:
            self._unrecorded.discard(agent_id)

    def detach(self, link: AgentLink) -> None:
        """Forget a stream that ended, unless a newer one of the same agent replaced it already (with
        replicas, its row in the registry goes at the next refresh)."""
        agent_id = link.hello.id
        if self._links.get(agent_id) is link:
            del self._links[agent_id]
            connection = self._connections.pop(agent_id)
            if self._replicas is not None:
                self._unrecorded.discard(agent_id)
                self._released.append(
                    StreamHolder(connection, self._replicas.replica_id, self._replicas.address)
                )

    async def observe(self, event: Event) -> None:
        """A connected agent that went OFFLINE (no heartbeat within the TTL, e.g. a partition or a stopped
        process whose connection still looks open) loses its stream: commands to it then fail at once
        (503) instead of waiting for their deadline, and the agent reconnects when it can. Only a stream
        its last heartbeat came on: one opened since (the agent came back to a restarted server, and the
        sweep or its own first heartbeat found the old silence) has not been silent."""
        if isinstance(event, AgentWentOffline):
            link = self._links.get(event.agent_id)
            if link is not None and self._connections[event.agent_id].connected_at <= event.last_seen:
                self.detach(link)
                await link.close(SILENT)

    def connection(self, agent_id: str) -> Connection | None:
        """The agent's stream, held by this replica or (as the registry last said) by another one."""
        connection = self._connections.get(agent_id)
        if connection is None and (remote := self._remote.get(agent_id)) is not None:
            return remote[0].connection
        return connection

    def connections(self) -> list[Connection]:
        """The streams this replica holds."""
        return sorted(self._connections.values(), key=lambda c: c.hello.id)

    def hello(self, agent_id: str) -> AgentHello | None:
        connection = self.connection(agent_id)
        return None if connection is None else connection.hello

    def local_link(self, agent_id: str) -> AgentLink | None:
        """The agent's stream if this replica holds it (what the relay serves to the other replicas)."""
        return self._links.get(agent_id)

    async def join(self) -> None:
        """Forget the registry's rows under this replica's id (left by an earlier run that died)."""
        if self._replicas is not None:
            await self._replicas.registry.forget_replica(self._replicas.replica_id)

    async def leave(self) -> None:
        """A clean stop: this replica's rows go, so the others stop relaying to it at once."""
        if self._replicas is not None:
            await self._replicas.registry.forget_replica(self._replicas.replica_id)

    async def refresh(self) -> None:
        """With replicas: forget the rows of streams that ended here, record those the database could not
        take when they attached (or lost since), and learn which agents the other replicas hold — their
        nodes join the containers (relayed; their events are published by the holder) — and which they
        no longer do."""
        replicas = self._replicas
        if replicas is None:
            return
        for agent_id, link in list(self._links.items()):
            if self._went_silent(self._connections[agent_id]):
                self.detach(link)
                await link.close(SILENT)
        while self._released:
            await replicas.registry.forget(self._released[0])
            self._released.pop(0)
        holders = await replicas.registry.holders()
        # Recorded again: a stream the database could not take when it attached, and one whose row
        # another replica forgot (it could not reach this one for a moment).
        for agent_id in self._unrecorded | (self._connections.keys() - {h.agent_id for h in holders}):
            connection = self._connections.get(agent_id)
            if connection is not None:
                await replicas.registry.record(
                    StreamHolder(connection, replicas.replica_id, replicas.address)
                )
            self._unrecorded.discard(agent_id)
        elsewhere: dict[str, StreamHolder] = {}
        for holder in holders:
            if holder.replica_id == replicas.replica_id or holder.agent_id in self._links:
                continue
            if self._went_silent(holder.connection):
                await replicas.registry.forget(holder)  # its holder closes it, or died: no one else will
                continue
            elsewhere[holder.agent_id] = holder
        for agent_id, (holder, link) in list(self._remote.items()):
            if elsewhere.get(agent_id) != holder:
                del self._remote[agent_id]
                await link.close("no replica holds the agent's stream any more")
        for agent_id, holder in elsewhere.items():
            if agent_id not in self._remote:
                self._adopt(replicas, holder)

    def _went_silent(self, connection: Connection) -> bool:
        """Whether the fleet shows the agent OFFLINE since a heartbeat it sent after this stream opened:
        the sweep ran on another replica (the leader), whose AgentWentOffline this one's `observe` does not
        receive; or the stream's replica died with it. A stream opened since (the agent came back) is not
        its; nor is an agent heard within the TTL, whatever status was stored by a sweep that had not
        learnt of that heartbeat yet (its next heartbeat brings it back)."""
        try:
            agent = self._fleet.get(connection.hello.id)
        except NotFound:
            return False
        return (
            agent.status is AgentStatus.OFFLINE
            and connection.connected_at <= agent.last_seen
            and agent.is_overdue(self._clock.now(), self._fleet.policy)
        )

    def _adopt(self, replicas: Replicas, holder: StreamHolder) -> AgentLink:
        """Reach an agent held by another replica through it; its engine becomes the node's runtime here."""
        link = replicas.relay(holder)
        self._remote[holder.agent_id] = (holder, link)
        hello = holder.connection.hello
        if hello.can(DOCKER) and not self._containers.serves_directly(hello.id):
            self._containers.attach(replicas.runtime_for(link), hello.labels, follow=False)
        return link

    async def _link(self, agent_id: str) -> AgentLink | None:
        """The agent's link: its local stream, or a relay to the replica that holds it — looked up in the
        registry when this replica did not know of it yet."""
        link = self._links.get(agent_id)
        if link is not None:
            return link
        remote = self._remote.get(agent_id)
        if remote is not None:
            return remote[1]
        replicas = self._replicas
        if replicas is None:
            return None
        holder = await replicas.registry.holder(agent_id)
        if holder is None or holder.replica_id == replicas.replica_id:
            return None
        link = self._links.get(agent_id)
        remote = self._remote.get(agent_id)
        if link is not None or remote is not None:  # learnt meanwhile
            return link or (remote[1] if remote is not None else None)
        return self._adopt(replicas, holder)

    async def sync(self, target: str | None, timeout: float) -> SyncReport:  # noqa: ASYNC109 (sent along)
        """Ask every connected agent (or `target`) to send its inventory and a heartbeat now; report who
        acknowledged within `timeout` seconds. A target that is known but not connected is missing."""
        if target is not None:
            link = await self._link(target)
            if link is None:
                self._fleet.get(target)  # NotFound for an agent never seen
                return SyncReport(agents=1, acknowledged=0, missing=(target,))
            links = [link]
        else:
            links = [*self._links.values(), *(link for _, link in self._remote.values())]
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
            link = await self._link(agent_id)
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
