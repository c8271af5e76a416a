"""Services: the fleet's containers grouped by the service they run, with their state, health-check
latency and CPU load. The engines are sampled in the background (`ServiceBoard.sample`, a job); the
dashboard reads the last sample and never calls an engine per request."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from statistics import fmean

from worpen_core.containers.model import Container, ContainerState, ContainerUsage, Health
from worpen_core.containers.service import Containers
from worpen_core.shared.errors import WorpenError
from worpen_core.shared.ports import Clock

SERVICE_LABELS = ("com.docker.compose.service", "com.docker.swarm.service.name")
"""Labels naming a container's service, in the order they are trusted."""
_REPLICA = re.compile(r"^(?P<service>.+?)(?:[-_]\d+|\.\d+(?:\.[a-z0-9]+)?)$")
"""A replica suffix: `web-2`, `web_2` (Compose), `web.2.k1x9` (Swarm tasks)."""


class ServiceStatus(StrEnum):
    HEALTHY = "HEALTHY"
    """Every container runs, and none reports a failing or pending health check."""
    WARNING = "WARNING"
    """Some run and pass, others do not (stopped, restarting, unhealthy or still starting)."""
    CRITICAL = "CRITICAL"
    """None runs with a passing (or no) health check."""


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    status: ServiceStatus
    latency_ms: int | None
    """Mean duration of each running container's latest health check; None when none has one."""
    load: int | None
    """Mean CPU of its running containers as `docker stats` shows it (100 = one core); None until two
    samples have been taken."""
    instances: int
    """Containers running."""
    containers: int
    """Containers in all, running or not."""
    nodes: tuple[str, ...]


def service_name(container: Container) -> str:
    """The container's service: its Compose or Swarm service label, else its name less a replica suffix."""
    for label in SERVICE_LABELS:
        value = container.labels.get(label)
        if value:
            return value
    match = _REPLICA.match(container.name)
    return container.name if match is None else match["service"]


def _is_up(container: Container) -> bool:
    return container.state is ContainerState.RUNNING and container.health in (Health.HEALTHY, Health.NONE)


def group_services(
    containers: Iterable[Container], cpu: Mapping[str, float], latency_ms: Mapping[str, float]
) -> list[Service]:
    """Services by name. `cpu` and `latency_ms` are by container id, for the containers sampled."""
    groups: dict[str, list[Container]] = defaultdict(list)
    for container in containers:
        groups[service_name(container)].append(container)
    services = []
    for name, members in sorted(groups.items()):
        running = [c for c in members if c.state is ContainerState.RUNNING]
        up = sum(1 for c in members if _is_up(c))
        status = (
            ServiceStatus.CRITICAL
            if up == 0
            else ServiceStatus.HEALTHY
            if up == len(members)
            else ServiceStatus.WARNING
        )
        loads = [cpu[c.id] for c in running if c.id in cpu]
        checks = [latency_ms[c.id] for c in running if c.id in latency_ms]
        services.append(
            Service(
                name=name,
                status=status,
                latency_ms=round(fmean(checks)) if checks else None,
                load=round(fmean(loads)) if loads else None,
                instances=len(running),
                containers=len(members),
                nodes=tuple(sorted({c.node for c in members})),
            )
        )
    return services


class ServiceBoard:
    """The services as last sampled. Each sample lists every node's containers, reads the CPU of each
    running one (one call each, a few at a time) and, for those with a health check, the latest check's
    duration; CPU load is the change between two samples.

    The engines are only sampled while someone looks: a sample is skipped when the services were not
    read for `watched_for`, and the first read after that starts one in the background (that read gets
    what the board last had), so an unwatched dashboard costs the engines nothing."""

    def __init__(
        self,
        containers: Containers,
        clock: Clock,
        concurrency: int = 8,
        watched_for: timedelta = timedelta(minutes=5),
    ) -> None:
        self._containers = containers
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)
        self._watched_for = watched_for
        self._read_at: datetime | None = None
        self._sampling: asyncio.Task[None] | None = None
        self._usage: dict[str, ContainerUsage] = {}
        self._services: list[Service] = []
        self.sampled_at: datetime | None = None
        self.unavailable: dict[str, str] = {}
        """Nodes left out of the last sample, with the reason."""

    def read(self) -> list[Service]:
        """The services as last sampled; starts a sample now if nobody was looking."""
        now = self._clock.now()
        if not self._watched(now) and (self._sampling is None or self._sampling.done()):
            self._sampling = asyncio.create_task(self._sample(), name="services-sample")
        self._read_at = now
        return self._services

    async def sample(self) -> None:
        """The periodic sample: skipped while nobody looks."""
        if self._watched(self._clock.now()):
            await self._sample()

    def _watched(self, now: datetime) -> bool:
        return self._read_at is not None and now - self._read_at < self._watched_for

    async def _sample(self) -> None:
        listing = await self._containers.list_containers()
        running = [c for c in listing.items if c.state is ContainerState.RUNNING]
        readings = await asyncio.gather(*(self._read(c) for c in running))
        cpu: dict[str, float] = {}
        latency: dict[str, float] = {}
        usage: dict[str, ContainerUsage] = {}
        for container, (now, check_ms) in zip(running, readings, strict=True):
            if now is not None:
                usage[container.id] = now
                before = self._usage.get(container.id)
                percent = None if before is None else now.cpu_percent(before)
                if percent is not None:
                    cpu[container.id] = percent
            if check_ms is not None:
                latency[container.id] = check_ms
        self._usage = usage
        self._services = group_services(listing.items, cpu, latency)
        self.unavailable = dict(listing.unavailable)
        self.sampled_at = self._clock.now()

    async def _read(self, container: Container) -> tuple[ContainerUsage | None, float | None]:
        """The container's CPU reading and its latest health check's duration in ms; None for what could
        not be read (it stopped meanwhile, its engine went away: the next sample tries again)."""
        async with self._slots:
            try:
                usage = await self._containers.usage(container)
            except WorpenError:
                usage = None
            if container.health is Health.NONE:
                return usage, None
            try:
                detail = await self._containers.inspect(container.id, container.node)
            except WorpenError:
                return usage, None
        timed = [(c.start, c.end) for c in detail.health_log if c.start is not None and c.end is not None]
        if not timed:
            return usage, None
        start, end = max(timed, key=lambda check: check[1])
        return usage, (end - start).total_seconds() * 1000
