"""What an agent says of itself when it connects, and what the control plane asks of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

PROTOCOL_VERSIONS = frozenset({1})
"""The channel protocol versions this server speaks (Hello.protocol / Welcome.protocol)."""
DOCKER = "docker"
"""Capability: the agent serves its node's Docker engine."""
SHELL = "shell"
"""Capability: the agent was started with --allow-shell and opens a PTY shell on its node."""


@dataclass(frozen=True, slots=True)
class AgentHello:
    """The agent's introduction on a new stream."""

    id: str
    version: str
    protocol: int
    capabilities: frozenset[str] = frozenset()
    labels: dict[str, str] = field(default_factory=dict)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True, slots=True)
class Connection:
    """A connected agent as the API shows it."""

    hello: AgentHello
    peer: str
    connected_at: datetime


@dataclass(frozen=True, slots=True)
class StreamHolder:
    """Which replica holds an agent's stream (the agent registry's row), and where the others reach it."""

    connection: Connection
    replica_id: str
    address: str
    """host:port of that replica's gRPC server, which relays commands to the agent (relay.proto)."""

    @property
    def agent_id(self) -> str:
        return self.connection.hello.id


@dataclass(frozen=True, slots=True)
class SyncReport:
    agents: int
    """How many connected agents were asked."""
    acknowledged: int
    missing: tuple[str, ...]
    """The ids of those that did not acknowledge within the deadline (or were not connected)."""


class CommandRefused(Exception):
    """The agent answered a command with an error (CommandError in agent.proto): its `code` and message.
    Adapters translate it into a core error with what they know of the command (what, which ref)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
