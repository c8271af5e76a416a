"""The running Worpen: services wired by the composition root, and their lifecycle."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog

from worpen_api import lifecycle
from worpen_api.settings import Settings
from worpen_core.access.service import ApiKeys, Authenticator
from worpen_core.agents.service import Agents
from worpen_core.audit.service import AuditTrail
from worpen_core.automation.engine import RuleEngine
from worpen_core.automation.notifications import Notifications
from worpen_core.automation.service import Automation
from worpen_core.containers.service import Containers
from worpen_core.dashboard.service import Dashboard
from worpen_core.dashboard.services import ServiceBoard
from worpen_core.events.journal import EventJournal
from worpen_core.fleet.service import Fleet
from worpen_core.incidents.service import Incidents
from worpen_core.logs.service import CentralLog
from worpen_core.pipelines.executor import PipelineExecutor
from worpen_core.pipelines.service import Pipelines
from worpen_core.shared.jobs import Job
from worpen_core.shared.ports import Leases
from worpen_core.telemetry.service import Telemetry

Hook = Callable[[], Awaitable[None]]
Readiness = Callable[[], Awaitable[Mapping[str, str]]]
log = structlog.get_logger("worpen")


async def _nothing_to_check() -> Mapping[str, str]:
    """The readiness of a Worpen on stores a test handed in: nothing of its own to check."""
    return {}


@dataclass(slots=True)
class Worpen:
    """Everything a running Worpen needs, wired; `start()` and `stop()` run its lifecycle."""

    settings: Settings
    fleet: Fleet
    api_keys: ApiKeys
    authenticator: Authenticator
    containers: Containers
    audit: AuditTrail
    dashboard: Dashboard
    services: ServiceBoard
    journal: EventJournal
    logs: CentralLog
    telemetry: Telemetry
    notifications: Notifications
    incidents: Incidents
    automation: Automation
    rule_engine: RuleEngine
    pipelines: Pipelines
    pipeline_executor: PipelineExecutor
    agents: Agents
    event_queue_depth: Callable[[], int]
    migrate: Callable[[], Awaitable[None]]
    readiness: Readiness = field(default=_nothing_to_check)
    """Whether the database answers at the schema this server needs (/ready): what it found, else
    Unavailable naming what is wrong."""
    agent_commands: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Commands sent to agents over their streams, by (kind, outcome)."""
    jobs: list[Job] = field(default_factory=list)
    """What the features declared to run in the background (worpen_core.<feature>.jobs); the singleton
    ones run only while this replica leads."""
    leases: Leases = field(default_factory=lifecycle.SoleReplica)
    """Where the replicas of one database elect their leader."""
    on_elected: list[Hook] = field(default_factory=list)
    """Run in order when this replica becomes the leader, before its singleton jobs start (adopt the
    pipeline runs under way)."""
    on_deposed: list[Hook] = field(default_factory=list)
    """Run in order when this replica stops leading, after its singleton jobs stopped (stop driving the
    pipeline runs: the next leader adopts them)."""
    leadership: lifecycle.Leadership | None = None
    """This replica's bid for the leader's lease, while it runs."""
    on_start: list[Hook] = field(default_factory=list)
    """Run in order after the fleet is restored (start the bus, the gRPC server)."""
    stop_intake: list[Hook] = field(default_factory=list)
    """Run first on stop, so nothing new arrives while buffers are flushed (stop gRPC)."""
    on_stop: list[Hook] = field(default_factory=list)
    """Run in order after the last flush (drain the bus, close the database)."""
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the server starts to shut down: the streams it serves (log follows, the event feed) end,
    so clients are not held until the graceful-shutdown timeout."""
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Migrate, restore the fleet, issue the first admin key if there is none, and start serving
        gRPC and the features' background jobs."""
        await self.migrate()
        restored = await self.fleet.restore()
        log.info("fleet.restored", agents=restored)
        if self.settings.auth:
            issued = await self.api_keys.issue_first_admin()
            if issued is not None:
                sys.stderr.write(
                    "\nNo API key existed, so Worpen created an admin key. It is shown this once:\n\n"
                    f"    {issued.secret}\n\nKeep it safe; create others with `worpen apikey create`.\n\n"
                )
                sys.stderr.flush()
        else:
            log.warning("auth.disabled", detail="every request is treated as admin; for development only")
        for hook in self.on_start:
            await hook()
        self._stopping.clear()
        self.draining.clear()
        self.leadership = lifecycle.Leadership(
            self.leases,
            self.settings.replicas.replica_id,
            self.settings.replicas.lease_seconds,
            [job for job in self.jobs if job.singleton],
            on_elected=self.on_elected,
            on_deposed=self.on_deposed,
        )
        # The first bid before serving: a single replica (SQLite) leads, and has adopted its runs, as
        # soon as it answers.
        await self.leadership.bid()
        self._tasks = [
            asyncio.create_task(lifecycle.run(job, self._stopping), name=job.name)
            for job in self.jobs
            if not job.singleton
        ]
        self._tasks.append(asyncio.create_task(self.leadership.run(self._stopping), name="leadership"))

    @property
    def leading(self) -> bool:
        """Whether this replica runs the singleton jobs now."""
        return self.leadership is not None and self.leadership.leading

    def drain(self) -> None:
        """End the streams being served; called as the server stops taking connections."""
        self.draining.set()

    async def stop(self) -> None:
        """Stop taking heartbeats and the loops, flush what is buffered, then close the bus and database."""
        for hook in self.stop_intake:
            await hook()
        # Ask the loops to stop rather than cancel them: a flush cancelled while it commits would be
        # put back in the buffer and written twice by the last flush.
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []
        try:
            written = await self.fleet.flush()
            log.info("telemetry.flushed", samples=written, reason="shutdown")
            await self.audit.flush()
        finally:
            await self.close()

    async def close(self) -> None:
        """Release what the adapters hold (the bus, the database); enough for one-shot CLI commands."""
        for hook in self.on_stop:
            await hook()
