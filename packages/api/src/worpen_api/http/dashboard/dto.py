"""Dashboard DTOs, in the shapes the cockpit reads."""

from __future__ import annotations

from datetime import datetime

import msgspec

from worpen_api.http.wire import Wire
from worpen_core.dashboard.security import Finding
from worpen_core.dashboard.service import Stats
from worpen_core.dashboard.services import Service, ServiceStatus
from worpen_core.dashboard.throughput import human_rate
from worpen_core.telemetry.service import LoadSeries, NetworkSeries


class FindingOut(Wire):
    count: int
    penalty: int
    max_penalty: int

    @classmethod
    def of(cls, finding: Finding) -> FindingOut:
        return cls(finding.count, finding.penalty, finding.max_penalty)


class StatsDetail(Wire):
    """The figures behind the four strings, as numbers, and each security finding with its penalty."""

    active_nodes: int
    messages_per_second: float
    avg_load: float | None
    security_score: int
    offline_agents: FindingOut
    outdated_agents: FindingOut
    failed_authentications: FindingOut
    admin_keys_without_expiry: FindingOut
    auth_disabled: FindingOut
    open_critical_incidents: FindingOut


class StatsOut(msgspec.Struct):
    """snake_case keys and string values, as the cockpit renders them as they are (it shows `...` for a
    falsy value, so none is ever empty or a bare 0)."""

    active_nodes: str
    throughput: str
    avg_load: str
    security_score: str
    detail: StatsDetail

    @classmethod
    def of(cls, stats: Stats) -> StatsOut:
        findings = {name: FindingOut.of(finding) for name, finding in stats.security.findings.items()}
        return cls(
            active_nodes=str(stats.active_nodes),
            throughput=human_rate(stats.messages_per_second),
            avg_load="n/a" if stats.avg_load is None else f"{stats.avg_load:.0f}%",
            security_score=f"{stats.security.score}%",
            detail=StatsDetail(
                active_nodes=stats.active_nodes,
                messages_per_second=round(stats.messages_per_second, 3),
                avg_load=None if stats.avg_load is None else round(stats.avg_load, 2),
                security_score=stats.security.score,
                offline_agents=findings["offlineAgents"],
                outdated_agents=findings["outdatedAgents"],
                failed_authentications=findings["failedAuthentications"],
                admin_keys_without_expiry=findings["adminKeysWithoutExpiry"],
                auth_disabled=findings["authDisabled"],
                open_critical_incidents=findings["openCriticalIncidents"],
            ),
        )


class ServiceOut(Wire):
    name: str
    status: ServiceStatus
    latency: int | None
    """Milliseconds: the mean duration of the running containers' latest health checks."""
    load: int | None
    instances: int
    containers: int
    nodes: list[str]

    @classmethod
    def of(cls, service: Service) -> ServiceOut:
        return cls(
            name=service.name,
            status=service.status,
            latency=service.latency_ms,
            load=service.load,
            instances=service.instances,
            containers=service.containers,
            nodes=list(service.nodes),
        )


class NetworkOut(Wire):
    """Bytes/s per bucket (null where there is no data), each starting at its timestamp."""

    inbound: list[float | None]
    outbound: list[float | None]
    timestamps: list[datetime]

    @classmethod
    def of(cls, series: NetworkSeries) -> NetworkOut:
        return cls(_rounded(series.inbound), _rounded(series.outbound), series.timestamps)


class LoadOut(Wire):
    """The fleet's mean cpu per bucket and its forecast; the last quarter of the timestamps are ahead of
    now, where `actual` is null."""

    predicted: list[float | None]
    actual: list[float | None]
    timestamps: list[datetime]

    @classmethod
    def of(cls, series: LoadSeries) -> LoadOut:
        return cls(_rounded(series.predicted), _rounded(series.actual), series.timestamps)


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if value is None else round(value, 2) for value in values]
