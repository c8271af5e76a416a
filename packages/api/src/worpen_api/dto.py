"""The wire format: msgspec Structs (camelCase, upper-case enums), converted from entities here only."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

from worpen_core.access.commands import CreateApiKey
from worpen_core.access.model import ApiKey, Role
from worpen_core.access.service import IssuedKey
from worpen_core.fleet.commands import COUNTER_MAX, IP_MAX_LENGTH, MAX_PEERS, TEXT_MAX_LENGTH, RecordHeartbeat
from worpen_core.fleet.model import Agent, TelemetrySample
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.ids import AGENT_ID_MAX_LENGTH, AGENT_ID_PATTERN

AgentId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=AGENT_ID_MAX_LENGTH,
        pattern=AGENT_ID_PATTERN,
        description="Agent id: letters, digits, '.', '_', ':' and '-'",
        examples=["bee-001"],
    ),
]
Percent = Annotated[float, Meta(ge=0, le=100, description="Percent, 0 to 100", examples=[42.5])]
Counter = Annotated[int, Meta(ge=0, le=COUNTER_MAX)]
Text = Annotated[str, Meta(max_length=TEXT_MAX_LENGTH)]


class Wire(msgspec.Struct, rename="camel", omit_defaults=False):
    pass


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
            cpu=self.cpu,
            ram=self.ram,
            status=self.status,
            name=self.name,
            ip=self.ip,
            os=self.os,
            version=self.version,
            uptime_seconds=self.uptime_seconds,
            disk=self.disk,
            net_rx_bytes=self.net_rx_bytes,
            net_tx_bytes=self.net_tx_bytes,
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
        return cls(
            at=sample.at,
            cpu=sample.cpu,
            ram=sample.ram,
            disk=sample.disk,
            net_rx_bytes=sample.net_rx_bytes,
            net_tx_bytes=sample.net_tx_bytes,
            uptime_seconds=sample.uptime_seconds,
        )


_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
"""Durations as people write them, largest first: `expiresIn` is read in them, uptimes shown in them."""


def human_duration(seconds: int) -> str:
    """`3d 4h`, `1h`, `12m`, `45s`: the largest unit and the next one unless it is zero (as a cockpit
    shows an uptime)."""
    counts: list[tuple[int, str]] = []
    rest = seconds
    for unit, size in _UNITS.items():
        count, rest = divmod(rest, size)
        if count or counts:
            counts.append((count, unit))
    shown = counts[:2] if counts else [(0, "s")]
    return " ".join(f"{count}{unit}" for count, unit in shown if count or len(shown) == 1)


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

    @classmethod
    def of(cls, agent: Agent) -> AgentOut:
        return cls(
            id=agent.id,
            name=agent.name,
            ip=agent.ip,
            os=agent.os,
            version=agent.version,
            status=agent.status,
            reported_status=agent.reported_status,
            cpu_load=agent.cpu_load,
            memory_load=agent.memory_load,
            last_seen=agent.last_seen,
            uptime=None if agent.uptime_seconds is None else human_duration(agent.uptime_seconds),
            uptime_seconds=agent.uptime_seconds,
            peers=len(agent.peers),
            peer_ids=list(agent.peers),
            registered_at=agent.registered_at,
        )


class AgentDetail(AgentOut):
    telemetry: Telemetry

    @classmethod
    def of(cls, agent: Agent) -> AgentDetail:
        return cls(**msgspec.structs.asdict(AgentOut.of(agent)), telemetry=Telemetry.of(agent.sample()))


class SyncIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    target: Annotated[
        str, Meta(min_length=1, max_length=AGENT_ID_MAX_LENGTH, examples=["all", "bee-001"])
    ] = "all"


class SyncOut(Wire):
    status: Literal["SYNCED"]
    agents: int
    went_offline: list[str]


Duration = Annotated[str, Meta(pattern=r"^[1-9][0-9]{0,5}[smhdw]$", examples=["30d", "12h"])]


class ApiKeyIn(Wire, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64, examples=["ci"])]
    role: Role
    agents: Annotated[list[AgentId], Meta(max_length=1000)] = msgspec.field(default_factory=list)
    expires_in: Duration | None = None

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "An agent key is bound to one agent id or more; a key of another role to none.",
        "if": {"properties": {"role": {"const": Role.AGENT.value}}},
        "then": {"properties": {"agents": {"minItems": 1}}, "required": ["agents"]},
        "else": {"properties": {"agents": {"maxItems": 0}}},
    }

    def to_command(self) -> CreateApiKey:
        expires_in = None if self.expires_in is None else parse_duration(self.expires_in)
        return CreateApiKey(self.name, self.role, tuple(self.agents), expires_in)


class ApiKeyOut(Wire):
    id: str
    name: str
    role: Role
    prefix: str
    agents: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> ApiKeyOut:
        return cls(
            id=key.id,
            name=key.name,
            role=key.role,
            prefix=key.prefix,
            agents=list(key.agent_ids),
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
        )


class ApiKeyCreated(ApiKeyOut):
    key: str
    """The secret. Shown once: only its hash is stored."""

    @classmethod
    def issued(cls, issued: IssuedKey) -> ApiKeyCreated:
        return cls(**msgspec.structs.asdict(ApiKeyOut.of(issued.key)), key=issued.secret)


class ErrorOut(Wire):
    status: int
    detail: str
    field: str | None = None


def parse_duration(text: str) -> timedelta:
    """'30d', '12h', '90m', '45s', '2w' as a timedelta."""
    return timedelta(seconds=int(text[:-1]) * _UNITS[text[-1]])
