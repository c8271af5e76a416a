"""A heartbeat's readings, taken from this machine."""

from __future__ import annotations

import ipaddress
import platform
import socket
import time

from worpen_agent.metrics import Metrics, first_address, route_address
from worpen_proto.v1 import fleet_pb2


def test_a_heartbeat_carries_the_nodes_readings() -> None:
    metrics = Metrics("bee-001", "1.2.3")
    message = metrics.heartbeat()
    beat = message.beat
    assert beat.id == "bee-001"
    assert beat.status == fleet_pb2.AGENT_STATUS_ONLINE
    assert beat.version == "1.2.3"
    assert beat.name == socket.gethostname()
    assert beat.os.startswith(platform.system())
    for percent in (beat.cpu, beat.ram, beat.disk):
        assert 0 <= percent <= 100
    assert beat.HasField("disk")
    assert beat.net_rx_bytes >= 0
    assert beat.net_tx_bytes >= 0
    assert beat.uptime_seconds > 0
    assert abs(message.measured_at_ms - time.time() * 1000) < 5_000
    assert message.HasField("load1")
    assert message.load1 >= 0
    assert message.HasField("load5")
    assert message.HasField("load15")


def test_counters_grow_between_heartbeats() -> None:
    metrics = Metrics("bee-001", "1.2.3")
    first = metrics.heartbeat()
    second = metrics.heartbeat()
    assert second.beat.net_rx_bytes >= first.beat.net_rx_bytes
    assert second.measured_at_ms >= first.measured_at_ms


def test_the_ip_is_the_address_that_routes_to_the_server() -> None:
    assert route_address("127.0.0.1", 3001) == "127.0.0.1"
    assert route_address("no-such-host.invalid", 3001) is None
    metrics = Metrics("bee-001", "1.2.3")
    metrics.ip = "127.0.0.1"
    assert metrics.heartbeat().beat.ip == "127.0.0.1"


def test_before_any_connection_the_ip_is_a_non_loopback_address_if_there_is_one() -> None:
    address = first_address()
    if address is not None:
        assert not ipaddress.ip_address(address).is_loopback
