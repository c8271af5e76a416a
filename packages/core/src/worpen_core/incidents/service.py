"""The incident use cases: report (open, count, reopen), remediation steps, escalation, resolution by hand
or by itself when its condition cleared."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from worpen_core.access.model import Permission, Principal
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.model import ContainerState, Health
from worpen_core.containers.service import Containers
from worpen_core.events.model import Event
from worpen_core.events.ports import EventBus
from worpen_core.fleet.events import Metric
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.incidents.events import (
    IncidentEscalated,
    IncidentEvent,
    IncidentOpened,
    IncidentRecurred,
    IncidentReopened,
    IncidentResolved,
    IncidentUpdated,
)
from worpen_core.incidents.model import (
    Incident,
    IncidentPolicy,
    IncidentQuery,
    IncidentReport,
    IncidentStatus,
    ResolutionMethod,
    TimelineEntry,
)
from worpen_core.incidents.ports import IncidentsUnitOfWorkFactory
from worpen_core.shared.errors import Conflict, Forbidden, NotFound, WorpenError
from worpen_core.shared.ports import Clock

WORPEN = "worpen"
"""Who resolves incidents whose condition cleared."""
REPORT_ATTEMPTS = 5
"""Tries of a report that lost the race to open its incident to another writer (see `report`)."""
AUTO_RESOLVE_BATCH = 1000
"""Pending incidents checked by one run of `auto_resolve`; the oldest wait for the next run."""
METRIC_ALERTS = {"CPU_HIGH": Metric.CPU, "MEMORY_HIGH": Metric.MEMORY, "DISK_USAGE_HIGH": Metric.DISK}
"""Metric triggers, and the metric each is about in an agent's `alerts`."""
AGENT_TRIGGERS = frozenset({"AGENT_OFFLINE", "AGENT_CRITICAL"})
CONTAINER_TRIGGER_PREFIX = "CONTAINER_"


class _KeyLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class Incidents:
    """Every change to an incident is made holding its dedup key's lock, so in this process concurrent
    reports of one problem make one incident and count every occurrence; the database's unique index on
    open keys is the backstop against any other writer. Each change is published as an event after its
    transaction committed."""

    def __init__(
        self,
        uow: IncidentsUnitOfWorkFactory,
        clock: Clock,
        bus: EventBus,
        fleet: Fleet,
        containers: Containers,
        audit: AuditTrail,
        policy: IncidentPolicy,
    ) -> None:
        self._uow = uow
        self._clock = clock
        self._bus = bus
        self._fleet = fleet
        self._containers = containers
        self._audit = audit
        self._policy = policy
        self._locks = _KeyLocks()

    async def report(self, report: IncidentReport) -> Incident:
        """Open an incident, or count the occurrence on the open one with the same key, or reopen the one
        resolved within the reopen window."""
        async with self._locks.hold(report.dedup_key):
            for _ in range(REPORT_ATTEMPTS - 1):
                try:
                    return await self._report(report)
                except Conflict:
                    continue  # another writer opened it first: read it again and count on it
            return await self._report(report)

    async def _report(self, report: IncidentReport) -> Incident:
        now = self._clock.now()
        event: IncidentEvent
        async with self._uow() as tx:
            found = await tx.incidents.find(report.dedup_key)
            if found is None or not (found.is_open or found.reopens_at(now, self._policy.reopen_window)):
                incident, entry = Incident.open(report, now)
                await tx.incidents.add(incident, [entry])
                event = IncidentOpened(
                    *IncidentEvent.about(incident, now), incident.trigger, incident.rule_id
                )
            elif found.is_open:
                incident = found
                await tx.incidents.update(incident, [incident.recur(report, now)])
                event = IncidentRecurred(*IncidentEvent.about(incident, now), incident.occurrences)
            else:
                incident = found
                await tx.incidents.update(incident, [incident.reopen(report, now)])
                event = IncidentReopened(*IncidentEvent.about(incident, now), incident.occurrences)
            await tx.commit()
        await self._bus.publish([event])
        return incident.without_timeline()

    async def step(self, incident_id: str, message: str, action: str | None = None) -> Incident:
        """Record a remediation step; `action`, when given, becomes the incident's action summary."""

        def change(incident: Incident, now: datetime) -> tuple[TimelineEntry, Event]:
            entry = incident.step(message, action, now)
            return entry, IncidentUpdated(*IncidentEvent.about(incident, now), entry.message, incident.action)

        return await self._change(incident_id, change)

    async def fail(self, incident_id: str, reason: str) -> Incident:
        """Remediation gave up: the incident is FAILED and escalated loudly (an ERROR line in the log)."""

        def change(incident: Incident, now: datetime) -> tuple[TimelineEntry, Event]:
            entry = incident.fail(reason, now)
            return entry, IncidentEscalated(*IncidentEvent.about(incident, now), entry.message)

        return await self._change(incident_id, change)

    async def resolve(
        self, incident_id: str, *, by: str, method: ResolutionMethod, notes: str = ""
    ) -> Incident:
        """Resolve an open incident; one already resolved is a Conflict."""

        def change(incident: Incident, now: datetime) -> tuple[TimelineEntry, Event]:
            entry = incident.resolve(by, method, notes, now)
            event = IncidentResolved(
                *IncidentEvent.about(incident, now), incident.resolved_by or by, method, incident.notes
            )
            return entry, event

        return await self._change(incident_id, change)

    async def resolve_as(self, principal: Principal, incident_id: str, notes: str = "") -> Incident:
        """An operator resolves an incident by hand: audited as `incident.resolve`."""
        if not principal.can(Permission.OPERATE):
            raise Forbidden("resolving an incident needs the operator role")
        incident = await self.get(incident_id)
        return await self._audit.run(
            principal,
            "incident.resolve",
            incident_id,
            incident.node,
            lambda: self.resolve(incident_id, by=principal.name, method=ResolutionMethod.MANUAL, notes=notes),
        )

    async def get(self, incident_id: str) -> Incident:
        """The incident with its whole timeline."""
        async with self._uow() as tx:
            incident = await tx.incidents.get(incident_id)
        if incident is None:
            raise NotFound("incident", incident_id)
        return incident

    async def query(self, query: IncidentQuery) -> list[Incident]:
        """Matching incidents, newest first, without their timelines."""
        async with self._uow() as tx:
            return await tx.incidents.query(query)

    async def auto_resolve(self) -> int:
        """Resolve (method AUTO) each pending incident whose condition cleared; how many were. Incidents
        with no condition Worpen can check (opened by a script, a schedule or by hand) are left to scripts
        and people; FAILED ones to people."""
        pending = await self.query(IncidentQuery(status=IncidentStatus.PENDING, limit=AUTO_RESOLVE_BATCH))
        cleared = await asyncio.gather(*(self._cleared(incident) for incident in pending))
        resolved = 0
        for incident, why in zip(pending, cleared, strict=True):
            if why is None:
                continue
            try:
                await self.resolve(incident.id, by=WORPEN, method=ResolutionMethod.AUTO, notes=why)
            except (Conflict, NotFound):
                continue  # resolved (or failed) by someone else since it was read
            resolved += 1
        return resolved

    async def _cleared(self, incident: Incident) -> str | None:
        """Why the incident's condition is over, or None while it is not (or cannot be told)."""
        trigger = incident.trigger or ""
        if trigger.startswith(CONTAINER_TRIGGER_PREFIX):
            return await self._container_up(incident)
        if trigger in AGENT_TRIGGERS or trigger in METRIC_ALERTS:
            try:
                agent = self._fleet.get(incident.node)
            except NotFound:
                return None
            if trigger in AGENT_TRIGGERS:
                return f"agent {agent.id} is ONLINE again" if agent.status is AgentStatus.ONLINE else None
            metric = METRIC_ALERTS[trigger]
            return None if metric in agent.alerts else f"{metric} of {agent.id} is back under its threshold"
        return None

    async def _container_up(self, incident: Incident) -> str | None:
        try:
            detail = await self._containers.inspect(incident.service, incident.node)
        except WorpenError:
            return None  # gone, or its engine cannot be asked: not cleared, and not an error
        container = detail.container
        if container.state is not ContainerState.RUNNING or container.health is Health.UNHEALTHY:
            return None
        if detail.started_at is None:
            return None
        up = self._clock.now() - detail.started_at
        if up < self._policy.grace:
            return None
        return (
            f"container {container.name} on {container.node} has been running for {int(up.total_seconds())} s"
        )

    async def _change(
        self, incident_id: str, change: Callable[[Incident, datetime], tuple[TimelineEntry, Event]]
    ) -> Incident:
        async with self._uow() as tx:
            known = await tx.incidents.get(incident_id)
        if known is None:
            raise NotFound("incident", incident_id)
        async with self._locks.hold(known.dedup_key):
            now = self._clock.now()
            async with self._uow() as tx:
                incident = await tx.incidents.get(incident_id)
                if incident is None:
                    raise NotFound("incident", incident_id)
                entry, event = change(incident, now)
                await tx.incidents.update(incident, [entry])
                await tx.commit()
        await self._bus.publish([event])
        return incident.without_timeline()
