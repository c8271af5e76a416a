"""GET /metrics/fleet: each agent's latest readings, network rates and status as Prometheus gauges labelled
by agent id, so that one scrape gives Grafana the whole fleet."""

from __future__ import annotations

from collections.abc import Iterator

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from worpen_api.http.errors import documented
from worpen_api.http.security import requires
from worpen_core.access.model import Permission
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.telemetry.service import Telemetry

PROMETHEUS_TEXT = CONTENT_TYPE_LATEST.removesuffix("; charset=utf-8")
LABEL = "agent"


class FleetTelemetryCollector(Collector):
    """Read at scrape time: the readings of each agent's latest heartbeat (from the fleet, in memory), its
    network rates as of the last rollup run, and its status as one gauge per status (1 for the current)."""

    def __init__(self, fleet: Fleet, telemetry: Telemetry) -> None:
        self._fleet = fleet
        self._telemetry = telemetry

    def collect(self) -> Iterator[Metric]:
        agents = self._fleet.query()
        rates = self._telemetry.network_rates()
        cpu = GaugeMetricFamily(
            "worpen_agent_cpu_percent", "CPU in use at the last heartbeat", labels=[LABEL]
        )
        ram = GaugeMetricFamily(
            "worpen_agent_ram_percent", "Memory in use at the last heartbeat", labels=[LABEL]
        )
        disk = GaugeMetricFamily(
            "worpen_agent_disk_percent",
            "Disk in use at the last heartbeat (agents that report it)",
            labels=[LABEL],
        )
        received = GaugeMetricFamily(
            "worpen_agent_network_receive_bytes_per_second",
            "Bytes received per second between the agent's last two heartbeats rolled up",
            labels=[LABEL],
        )
        sent = GaugeMetricFamily(
            "worpen_agent_network_transmit_bytes_per_second",
            "Bytes sent per second between the agent's last two heartbeats rolled up",
            labels=[LABEL],
        )
        last_seen = GaugeMetricFamily(
            "worpen_agent_last_seen_timestamp_seconds", "When the agent's last heartbeat came", labels=[LABEL]
        )
        status = GaugeMetricFamily(
            "worpen_agent_status",
            "1 for the agent's current status, 0 for the others",
            labels=[LABEL, "status"],
        )
        for agent in agents:
            label = [agent.id]
            readings = agent.readings
            cpu.add_metric(label, readings.cpu)
            ram.add_metric(label, readings.ram)
            if readings.disk is not None:
                disk.add_metric(label, readings.disk)
            rate = rates.get(agent.id)
            if rate is not None and rate.inbound is not None:
                received.add_metric(label, rate.inbound)
            if rate is not None and rate.outbound is not None:
                sent.add_metric(label, rate.outbound)
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
        sync_to_thread=False,
    )
    def fleet_metrics(
        self, fleet: NamedDependency[Fleet], telemetry: NamedDependency[Telemetry]
    ) -> Response[bytes]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(FleetTelemetryCollector(fleet, telemetry))
        # Litestar adds the charset of every text/* answer itself.
        return Response(generate_latest(registry), media_type=PROMETHEUS_TEXT)
