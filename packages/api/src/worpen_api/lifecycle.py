"""Runs the background jobs that features declare (worpen_core.<feature>.jobs) from start to stop, and says
in the log what they could not do."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import structlog

from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import WorpenError
from worpen_core.shared.jobs import Continuous, Job, Periodic
from worpen_core.shared.ports import Leases

log = structlog.get_logger("worpen")

LEADER = "leader"
"""The lease whose holder runs the singleton jobs."""
Hook = Callable[[], Awaitable[None]]


async def run(job: Job, stopping: asyncio.Event) -> None:
    """Run `job` until `stopping` is set: a periodic step every so often (asked to stop, not cancelled:
    a flush cancelled while it commits would be put back in its buffer and written twice), a continuous
    job once."""
    if isinstance(job, Continuous):
        await job.run(stopping)
        return
    await _every(job, stopping)


async def _every(job: Periodic, stopping: asyncio.Event) -> None:
    while True:
        try:
            await asyncio.wait_for(stopping.wait(), timeout=job.seconds)
        except TimeoutError:
            pass
        else:
            return
        try:
            await job.step()
        except WorpenError as exc:
            log.error(f"{job.name}.failed", detail=exc.detail, retry_in=job.seconds)
        except Exception:
            # A bug, not an outage: say so loudly, and keep the loop alive (what the job had buffered
            # stays buffered) rather than let offline detection or persistence stop for good.
            log.exception(f"{job.name}.crashed", retry_in=job.seconds)


class TelemetryDrops:
    """The telemetry flush, saying in the log when samples are dropped because their buffer is full:
    once when a flush first finds some were dropped, and how many when a flush succeeds again."""

    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet
        self._dropping = False
        self._reported = 0
        """`fleet.samples_dropped` when the last outage that dropped samples ended."""

    async def flush(self) -> None:
        try:
            await self._fleet.flush()
        finally:
            dropped = self._fleet.samples_dropped - self._reported
            if dropped and not self._dropping:
                self._dropping = True
                log.warning(
                    "telemetry.dropping",
                    max_buffered=self._fleet.policy.max_buffered_samples,
                    detail="telemetry cannot be written and its buffer is full: dropping the oldest samples",
                )
        if self._dropping:
            self._dropping = False
            self._reported += dropped
            log.warning("telemetry.recovered", dropped=dropped)


class SoleReplica:
    """Leases when nothing is shared (a test's storage in memory): this replica always leads."""

    async def hold(self, name: str, holder: str, ttl: timedelta) -> int | None:
        return 1

    async def release(self, name: str, holder: str) -> None:
        return None


class Leadership:
    """This replica's bid for the leader's lease, and the singleton jobs it runs while it holds it: one
    leader for scheduled work, any replica for the API (Nomad's design).

    The lease is renewed every third of its length. It is given up (the singleton jobs asked to stop and
    waited for) when another replica holds it, or when no renewal succeeded within a lease of the last
    one's start: the database may be out of reach for this replica only, so another one may take over as
    soon as the lease expires, and this one must have stopped by then."""

    def __init__(
        self,
        leases: Leases,
        replica: str,
        lease_seconds: float,
        jobs: Sequence[Job],
        *,
        on_elected: Sequence[Hook] = (),
        on_deposed: Sequence[Hook] = (),
    ) -> None:
        self._leases = leases
        self._replica = replica
        self._lease = lease_seconds
        self._jobs = list(jobs)
        self._on_elected = list(on_elected)
        self._on_deposed = list(on_deposed)
        self.token: int | None = None
        """The lease's fencing token while this replica leads."""
        self._held_at = 0.0
        """When (monotonic) the last successful hold was sent: the lease lasts at least a lease from then."""
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def leading(self) -> bool:
        return self.token is not None

    async def run(self, stopping: asyncio.Event) -> None:
        """Bid every third of a lease until `stopping` is set; then stop the singleton jobs and release
        the lease, so another replica takes over at once."""
        try:
            while not stopping.is_set():
                await self.bid()
                wait = self._lease / 3
                if self.leading:
                    wait = max(0.0, min(wait, self._deadline() - time.monotonic()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), wait)
        finally:
            await self.resign()

    async def bid(self) -> None:
        """Take or renew the lease once; start or stop the singleton jobs accordingly."""
        sent = time.monotonic()
        if self.leading and sent >= self._deadline():
            await self._depose("the lease could not be renewed in time")
        timeout = self._deadline() - sent if self.leading else self._lease
        try:
            token = await asyncio.wait_for(
                self._leases.hold(LEADER, self._replica, timedelta(seconds=self._lease)), timeout
            )
        except (WorpenError, TimeoutError) as exc:
            detail = exc.detail if isinstance(exc, WorpenError) else "no answer in time"
            if self.leading and time.monotonic() >= self._deadline():
                await self._depose(f"the lease could not be renewed: {detail}")
            elif self.leading:
                log.warning("leader.renew_failed", replica=self._replica, token=self.token, detail=detail)
            return
        if token is None:
            if self.leading:
                await self._depose("another replica holds the lease")
            return
        if self.leading and token != self.token:
            # Another replica held the lease in between, unbeknown to this one: its term ended.
            await self._depose("another replica held the lease meanwhile")
        self._held_at = sent
        if not self.leading:
            await self._elect(token)

    async def resign(self) -> None:
        """Stop leading (a clean stop): the singleton jobs end, then the lease is released."""
        if not self.leading:
            return
        await self._depose("this replica is stopping", clean=True)
        try:
            await asyncio.wait_for(self._leases.release(LEADER, self._replica), self._lease)
        except (WorpenError, TimeoutError):
            log.warning("leader.release_failed", replica=self._replica, detail="the lease will expire")

    def _deadline(self) -> float:
        return self._held_at + self._lease

    async def _elect(self, token: int) -> None:
        try:
            for hook in self._on_elected:
                await hook()
        except WorpenError as exc:
            # Not ready to lead (the runs to adopt could not be read): let another replica try.
            log.error("leader.not_ready", replica=self._replica, detail=exc.detail)
            with contextlib.suppress(WorpenError):
                await self._leases.release(LEADER, self._replica)
            return
        self.token = token
        log.info("leader.elected", replica=self._replica, token=token)
        self._stopping = asyncio.Event()
        self._tasks = [
            asyncio.create_task(run(self._guarded(job), self._stopping), name=job.name) for job in self._jobs
        ]

    def _guarded(self, job: Job) -> Job:
        """`job`, whose periodic steps are skipped once the lease may have passed to another replica:
        after a pause of this process (a stop signal, swapping) a step's timer may fire before the
        leader loop notices that the lease ran out."""
        if not isinstance(job, Periodic):
            return job
        step = job.step

        async def guarded() -> object:
            if time.monotonic() >= self._deadline():
                return None
            return await step()

        return dataclasses.replace(job, step=guarded)

    async def _depose(self, reason: str, *, clean: bool = False) -> None:
        token, self.token = self.token, None
        if clean:
            log.info("leader.resigned", replica=self._replica, token=token)
        else:
            log.warning("leader.lost", replica=self._replica, token=token, reason=reason)
        self._stopping.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for hook in self._on_deposed:
            with contextlib.suppress(WorpenError):
                await hook()
