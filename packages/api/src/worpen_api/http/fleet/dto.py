"""Fleet DTOs: heartbeats, agents, telemetry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from worpen_api.http.wire import (
    AgentId,
    Counter,
    Percent,
    Text,
    Wire,
    human_duration,
)
from worpen_core.agents.model import SHELL, Connection, SyncReport
from worpen_core.fleet.commands import IP_MAX_LENGTH, MAX_PEERS, RecordHeartbeat
from worpen_core.fleet.model import Agent, TelemetrySample
from worpen_core.fleet.readings import READING_NAMES, Readings, values_of
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.ids import AGENT_ID_MAX_LENGTH


class HeartbeatIn(Wire):
    """A heartbeat. Unknown fields are ignored, so newer agents can talk to older servers."""

    id: AgentId
    cpu: Percent
    ram: Percent
    status: AgentStatus = AgentStatus.ONLINE
    name: Text | None = None
    ip: (
        Annotated[
            str,
            Meta(
                max_length=IP_MAX_LENGTH,
                examples=["10.0.0.7"],
                extra_json_schema={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
            ),
        ]
        | None
    ) = None
    os: Text | None = None
    version: Text | None = None
    uptime_seconds: Counter | None = None
    disk: Percent | None = None
    net_rx_bytes: Counter | None = None
    net_tx_bytes: Counter | None = None
    peers: Annotated[list[AgentId], Meta(max_length=MAX_PEERS)] = msgspec.field(default_factory=list)

    def to_command(self) -> RecordHeartbeat:
        return RecordHeartbeat(
            agent_id=self.id,
            readings=Readings(*values_of(self)),
            status=self.status,
            name=self.name,
            ip=self.ip,
            os=self.os,
            version=self.version,
            peers=tuple(self.peers),
        )


class HeartbeatAck(Wire):
    next_heartbeat_seconds: int
    status: AgentStatus


class Telemetry(Wire):
    at: datetime
    cpu: float
    ram: float
    disk: float | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None
    uptime_seconds: int | None

    @classmethod
    def of(cls, sample: TelemetrySample) -> Telemetry:
        return cls(at=sample.at, **dict(zip(READING_NAMES, values_of(sample.readings), strict=True)))


class AgentOut(Wire):
    id: str
    name: str
    ip: str | None
    os: str | None
    version: str | None
    status: AgentStatus
    reported_status: AgentStatus
    cpu_load: float
    memory_load: float
    last_seen: datetime
    uptime: Annotated[str | None, Meta(examples=["3d 4h", "12m"])]
    """How long the node has been up, for people: its largest unit and the next one."""
    uptime_seconds: int | None
    peers: int
    """How many peers the node reported; their ids are `peerIds`."""
    peer_ids: list[str]
    registered_at: datetime
    connected: bool
    """Connected now over the command channel (the worpen-agent program); false for agents that only
    post heartbeats, whose channel fields below are null."""
    connected_at: datetime | None
    agent_version: str | None
    """The version the agent program announced when it connected."""
    protocol: int | None
    """The channel protocol version agreed on."""
    capabilities: list[str] | None
    labels: dict[str, str] | None
    """The node's labels (the agent's --labels)."""
    shell: bool
    """The agent was started with --allow-shell: /api/v1/terminal/agent/{id} opens a shell on its node."""

    @classmethod
    def of(cls, agent: Agent, connection: Connection | None) -> AgentOut:
        uptime = agent.readings.uptime_seconds
        hello = None if connection is None else connection.hello
        return cls(
            id=agent.id,
            name=agent.name,
            ip=agent.ip,
            os=agent.os,
            version=agent.version,
            status=agent.status,
            reported_status=agent.reported_status,
            cpu_load=agent.readings.cpu,
            memory_load=agent.readings.ram,
            last_seen=agent.last_seen,
            uptime=None if uptime is None else human_duration(uptime),
            uptime_seconds=uptime,
            peers=len(agent.peers),
            peer_ids=list(agent.peers),
            registered_at=agent.registered_at,
            connected=connection is not None,
            connected_at=None if connection is None else connection.connected_at,
            agent_version=None if hello is None else hello.version,
            protocol=None if hello is None else hello.protocol,
            capabilities=None if hello is None else sorted(hello.capabilities),
            labels=None if hello is None else dict(hello.labels),
            shell=hello is not None and hello.can(SHELL),
        )


class AgentDetail(AgentOut):
    telemetry: Telemetry

    @classmethod
    def of(cls, agent: Agent, connection: Connection | None) -> AgentDetail:
        return cls(
            **msgspec.structs.asdict(AgentOut.of(agent, connection)), telemetry=Telemetry.of(agent.sample())
        )


class SyncIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    target: Annotated[
        str, Meta(min_length=1, max_length=AGENT_ID_MAX_LENGTH, examples=["all", "bee-001"])
    ] = "all"


class SyncOut(Wire):
    status: Literal["SYNCED"]
    agents: int
    """How many agents were asked: those connected over the command channel, or the one target."""
    acknowledged: int
    """How many of them answered within the deadline."""
    missing: list[str]
    """The ids of those that did not (a target that is not connected is missing too)."""
    went_offline: list[str]
    """Agents found OFFLINE by the status re-evaluation that follows."""

    @classmethod
    def of(cls, report: SyncReport, went_offline: list[str]) -> SyncOut:
        return cls(
            status="SYNCED",
            agents=report.agents,
            acknowledged=report.acknowledged,
            missing=list(report.missing),
            went_offline=went_offline,
        )
