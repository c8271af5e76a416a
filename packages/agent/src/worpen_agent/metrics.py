"""The node's readings for a heartbeat, taken with psutil: cheap reads of /proc that do not block the loop
(cpu is the average since the previous reading; only the first one waits, before the loop starts)."""

from __future__ import annotations

import ipaddress
import os
import platform
import socket
import time

import psutil

from worpen_proto.v1 import agent_pb2, fleet_pb2

CPU_WINDOW = 0.5
"""The shortest time cpu is measured over, in seconds."""


class Metrics:
    def __init__(self, agent_id: str, version: str, *, disk_path: str = "/") -> None:
        """Blocks for CPU_WINDOW to take a first cpu reading: build it before the event loop runs."""
        self._agent_id = agent_id
        self._version = version
        self._disk_path = disk_path
        self._hostname = socket.gethostname()
        self._os = f"{platform.system()} {platform.release()} {platform.machine()}".strip()
        self.ip: str | None = first_address()
        """The address the node is reached at: the local end of the connection to Worpen once known."""
        self._cpu = psutil.cpu_percent(interval=CPU_WINDOW)
        self._cpu_at = time.monotonic()

    def cpu(self) -> float:
        """Percent busy since the previous reading; readings closer than CPU_WINDOW (a heartbeat on Welcome
        right after the one at start, a sync) repeat the last one, since over a few milliseconds the
        kernel's tick counters only say 0 or 100."""
        now = time.monotonic()
        if now - self._cpu_at >= CPU_WINDOW:
            self._cpu = psutil.cpu_percent(interval=None)
            self._cpu_at = now
        return self._cpu

    def heartbeat(self) -> agent_pb2.AgentHeartbeat:
        memory = psutil.virtual_memory()
        beat = fleet_pb2.Heartbeat(
            id=self._agent_id,
            cpu=self.cpu(),
            ram=memory.percent,
            status=fleet_pb2.AGENT_STATUS_ONLINE,
            name=self._hostname,
            os=self._os,
            version=self._version,
            uptime_seconds=max(0, int(time.time() - psutil.boot_time())),
        )
        if self.ip is not None:
            beat.ip = self.ip
        try:
            beat.disk = psutil.disk_usage(self._disk_path).percent
        except OSError:
            beat.ClearField("disk")
        counters = psutil.net_io_counters()
        if counters is not None:
            beat.net_rx_bytes = counters.bytes_recv
            beat.net_tx_bytes = counters.bytes_sent
        message = agent_pb2.AgentHeartbeat(beat=beat, measured_at_ms=time.time_ns() // 1_000_000)
        if hasattr(os, "getloadavg"):
            message.load1, message.load5, message.load15 = os.getloadavg()
        return message


def first_address() -> str | None:
    """The first non-loopback address of the node's interfaces (IPv4 first), before any connection says
    which one routes to Worpen."""
    candidates: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            parsed = _address(address.address)
            if parsed is not None and not (parsed.is_loopback or parsed.is_link_local):
                candidates.append(parsed)
    candidates.sort(key=lambda a: a.version)
    return str(candidates[0]) if candidates else None


def route_address(host: str, port: int) -> str | None:
    """The local address the node uses to reach host:port (a UDP socket's connect routes without sending
    anything); None when the host does not resolve. Blocking (name resolution): run it in a thread."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError:
        return None
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.connect(address)
                local = _address(str(probe.getsockname()[0]))
        except OSError:
            continue
        if local is not None:
            return str(local)
    return None


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
