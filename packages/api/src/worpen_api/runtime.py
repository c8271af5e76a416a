"""The running Worpen: services wired by the composition root, and their lifecycle."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from worpen_api.settings import Settings
from worpen_core.access.service import ApiKeys, Authenticator
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.service import Containers
from worpen_core.events.feed import EventFeed
from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import WorpenError

Hook = Callable[[], Awaitable[None]]
FIRST_ENGINE_RETRY = 0.5
"""Seconds before the first retry of a lost Docker engine; each retry doubles it, up to a maximum."""
log = structlog.get_logger("worpen")


@dataclass(slots=True)
class Worpen:
    """Everything a running Worpen needs, wired; `start()` and `stop()` run its lifecycle."""

    settings: Settings
    fleet: Fleet
    api_keys: ApiKeys
    authenticator: Authenticator
    containers: Containers
    audit: AuditTrail
    feed: EventFeed
    event_queue_depth: Callable[[], int]
    migrate: Callable[[], Awaitable[None]]
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
    _dropping: bool = False
    """Telemetry samples are being dropped (their buffer is full) and it has been logged."""
    _drops_reported: int = 0
    """`fleet.samples_dropped` when the last outage that dropped samples ended."""

    async def start(self) -> None:
        """Migrate, restore the fleet, issue the first admin key if there is none, and start serving
        gRPC and the background loops (offline detection, telemetry flush)."""
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
        self._tasks = [
            asyncio.create_task(self._every(self.settings.sweep_interval, self.fleet.sweep, "sweep")),
            asyncio.create_task(self._every(self.settings.flush_interval, self._flush_telemetry, "flush")),
            asyncio.create_task(self._every(self.settings.flush_interval, self.audit.flush, "audit.flush")),
            asyncio.create_task(
                self.containers.watch(self._stopping, FIRST_ENGINE_RETRY, self.settings.docker_retry_max)
            ),
        ]

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

    async def _flush_telemetry(self) -> None:
        """Write the buffered telemetry. Samples dropped because the buffer was full are logged once per
        outage: when a flush first finds some were dropped, and how many when a flush succeeds again."""
        try:
            await self.fleet.flush()
        finally:
            dropped = self.fleet.samples_dropped - self._drops_reported
            if dropped and not self._dropping:
                self._dropping = True
                log.warning(
                    "telemetry.dropping",
                    max_buffered=self.settings.policy.max_buffered_samples,
                    detail="telemetry cannot be written and its buffer is full: dropping the oldest samples",
                )
        if self._dropping:
            self._dropping = False
            self._drops_reported += dropped
            log.warning("telemetry.recovered", dropped=dropped)

    async def _every(self, seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
        while True:
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=seconds)
            except TimeoutError:
                pass
            else:
                return
            try:
                await job()
            except WorpenError as exc:
                log.error(f"{name}.failed", detail=exc.detail, retry_in=seconds)
            except Exception:
                # A bug, not an outage: say so loudly, and keep the loop alive (what the job had buffered
                # stays buffered) rather than let offline detection or persistence stop for good.
                log.exception(f"{name}.crashed", retry_in=seconds)
