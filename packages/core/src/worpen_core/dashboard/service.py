"""The dashboard's headline figures, computed from what the fleet, access and ingestion counters hold
now (in memory, but for the list of API keys): cheap at any fleet size."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from worpen_core.access.service import ApiKeys, FailedAuthThrottle
from worpen_core.dashboard.security import SecurityScore, security_score
from worpen_core.dashboard.throughput import Throughput
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.shared.ports import Clock

ACTIVE = frozenset({AgentStatus.ONLINE, AgentStatus.CRITICAL, AgentStatus.HEALING})


@dataclass(frozen=True, slots=True)
class Stats:
    active_nodes: int
    """Agents ONLINE, CRITICAL or HEALING."""
    messages_per_second: float
    """Heartbeats, log lines and events ingested per second over the last minute."""
    avg_load: float | None
    """Mean cpu of the active agents; None when none is active."""
    security: SecurityScore


class Dashboard:
    def __init__(
        self,
        fleet: Fleet,
        api_keys: ApiKeys,
        throttle: FailedAuthThrottle,
        throughput: Throughput,
        clock: Clock,
        *,
        auth_enabled: bool,
    ) -> None:
        self._fleet = fleet
        self._api_keys = api_keys
        self._throttle = throttle
        self.throughput = throughput
        self._clock = clock
        self._auth_enabled = auth_enabled

    async def stats(self) -> Stats:
        agents = self._fleet.agents()
        loads = [agent.readings.cpu for agent in agents if agent.status in ACTIVE]
        keys = await self._api_keys.list_all()
        return Stats(
            active_nodes=len(loads),
            messages_per_second=self.throughput.per_second(),
            avg_load=fmean(loads) if loads else None,
            security=security_score(
                agents, keys, self._throttle.failures_in_last_hour(), self._auth_enabled, self._clock.now()
            ),
        )
