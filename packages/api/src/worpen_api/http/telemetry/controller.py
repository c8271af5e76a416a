"""GET /metrics/fleet: each agent's latest readings, network rates and status as Prometheus gauges labelled
by agent id, so that one scrape gives Grafana the whole fleet."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worpen_api.http.errors import documented
from worpen_api.http.security import requires
from worpen_core.access.model import Permission
from worpen_core.fleet.model import Agent
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.telemetry.model import NetworkRates
from worpen_core.telemetry.service import Telemetry

PROMETHEUS_TEXT = CONTENT_TYPE_LATEST.removesuffix("; charset=utf-8")
LABEL = "agent"


class FleetTelemetryCollector(Collector):
    """The readings of each agent's latest heartbeat, its network rates as of the last rollup run, and its
    status as one gauge per status (1 for the current), from a snapshot taken on the event loop."""

    def __init__(self, agents: Sequence[Agent], rates: Mapping[str, NetworkRates]) -> None:
        self._agents = agents
        self._rates = rates

    def collect(self) -> Iterator[Metric]:
        def gauge(name: str, documentation: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, documentation, labels=[LABEL])

        cpu = gauge("worpen_agent_cpu_percent", "CPU in use at the last heartbeat")
        ram = gauge("worpen_agent_ram_percent", "Memory in use at the last heartbeat")
        disk = gauge("worpen_agent_disk_percent", "Disk in use at the last heartbeat (agents that report it)")
        received = gauge(
            "worpen_agent_network_receive_bytes_per_second",
            "Bytes received per second between the agent's last two heartbeats rolled up",
        )
        sent = gauge(
            "worpen_agent_network_transmit_bytes_per_second",
            "Bytes sent per second between the agent's last two heartbeats rolled up",
        )
        last_seen = gauge("worpen_agent_last_seen_timestamp_seconds", "When the agent's last heartbeat came")
        status = GaugeMetricFamily(
            "worpen_agent_status", "1 for the agent's status, 0 for the others", labels=[LABEL, "status"]
        )
        for agent in self._agents:
            label = [agent.id]
            readings = agent.readings
            cpu.add_metric(label, readings.cpu)
            ram.add_metric(label, readings.ram)
            if readings.disk is not None:
                disk.add_metric(label, readings.disk)
            rates = self._rates.get(agent.id)
            if rates is not None and rates.inbound is not None:
                received.add_metric(label, rates.inbound)
            if rates is not None and rates.outbound is not None:
                sent.add_metric(label, rates.outbound)
            last_seen.add_metric(label, agent.last_seen.timestamp())
            for state in AgentStatus:
                status.add_metric([agent.id, state.value], 1 if agent.status is state else 0)
        yield from (cpu, ram, disk, received, sent, last_seen, status)


class TelemetryController(Controller):
    tags = ["telemetry"]

    @get(
        "/metrics/fleet",
        operation_id="fleetMetrics",
        responses=documented(),
        opt=requires(Permission.READ),
        media_type=MediaType.TEXT,
        summary="Every agent's latest telemetry and status as Prometheus gauges (viewer and up)",
        description="Gauges labelled by agent id: cpu, ram and disk percent, network bytes/s received and "
        "sent (from the cumulative counters, as of the last rollup), the last heartbeat's time, and one "
        "`worpen_agent_status` series per status (1 for the current one).",
    )
    async def fleet_metrics(
        self, fleet: NamedDependency[Fleet], telemetry: NamedDependency[Telemetry]
    ) -> Response[bytes]:
        registry = CollectorRegistry(auto_describe=False)
        # Agents are replaced, never changed, by a heartbeat: a list of them is a snapshot. Rendering ten
        # thousand agents takes most of a second: in a worker thread, off the heartbeat path.
        registry.register(FleetTelemetryCollector(fleet.query(), dict(telemetry.network_rates())))
        body = await asyncio.to_thread(generate_latest, registry)
        # Litestar adds the charset of every text/* answer itself.
        return Response(body, media_type=PROMETHEUS_TEXT)
