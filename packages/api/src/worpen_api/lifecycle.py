"""Runs the background jobs that features declare (worpen_core.<feature>.jobs) from start to stop, and says
in the log what they could not do."""

from __future__ import annotations

import asyncio

import structlog

from worpen_core.fleet.service import Fleet
from worpen_core.shared.errors import WorpenError
from worpen_core.shared.jobs import Continuous, Job, Periodic

log = structlog.get_logger("worpen")


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
