"""The heartbeat command: an agent's report, validated on construction."""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from datetime import datetime

from worpen_core.fleet.readings import Readings
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.errors import InvalidInput
from worpen_core.shared.ids import check_agent_id

TEXT_MAX_LENGTH = 255
MAX_PEERS = 256
IP_MAX_LENGTH = 64


@functools.lru_cache(maxsize=65_536)
def _is_ip_address(value: str) -> bool:
    """Remembered: an agent sends the same address with every heartbeat, and parsing one costs more than
    the rest of a heartbeat's validation (1.8 µs)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _check_text(value: str | None, field: str) -> None:
    if value is not None and len(value) > TEXT_MAX_LENGTH:
        raise InvalidInput(f"must be at most {TEXT_MAX_LENGTH} characters long", field)


@dataclass(frozen=True, slots=True)
class RecordHeartbeat:
    """An agent's report: its readings, its own view of its status, and what it knows of itself."""

    agent_id: str
    readings: Readings
    status: AgentStatus = AgentStatus.ONLINE
    name: str | None = None
    ip: str | None = None
    os: str | None = None
    version: str | None = None
    peers: tuple[str, ...] = ()
    measured_at: datetime | None = None
    """When the readings were taken, if the agent says (a heartbeat it buffered while disconnected and
    sends later); its telemetry sample is stored at that time."""

    def __post_init__(self) -> None:
        check_agent_id(self.agent_id)
        _check_text(self.name, "name")
        _check_text(self.os, "os")
        _check_text(self.version, "version")
        if self.ip is not None and (len(self.ip) > IP_MAX_LENGTH or not _is_ip_address(self.ip)):
            raise InvalidInput(f"is not an IPv4 or IPv6 address: {self.ip[:64]!r}", "ip")
        if len(self.peers) > MAX_PEERS:
            raise InvalidInput(f"may list at most {MAX_PEERS} peers", "peers")
        for peer in self.peers:
            check_agent_id(peer, "peers")
