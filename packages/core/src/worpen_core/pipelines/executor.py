"""Running pipeline runs on the fleet: the scheduler places queued runs on nodes, and one driver per
run fetches its source into a workspace volume, runs its stages as containers in dependency order,
stores their masked logs, and keeps leases on what runs so nothing is left RUNNING after a crash."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shlex
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from worpen_core.containers.model import WORKLOAD_LABEL, ContainerState, LogLine, LogQuery, WorkloadSpec
from worpen_core.containers.ports import ContainerRuntime
from worpen_core.containers.service import Containers
from worpen_core.events.model import Event
from worpen_core.events.ports import EventBus
from worpen_core.fleet.service import Fleet
from worpen_core.fleet.status import AgentStatus
from worpen_core.pipelines.events import PipelineRunFinished, PipelineRunStarted, PipelineStageFinished
from worpen_core.pipelines.feed import StageFeed
from worpen_core.pipelines.masking import StreamMask
from worpen_core.pipelines.model import (
    WORKSPACE,
    PipelineRun,
    RunStatus,
    StageLogLine,
    StageRun,
    StageStatus,
)
from worpen_core.pipelines.ports import (
    PipelineRequest,
    PipelineRequests,
    PipelinesUnitOfWorkFactory,
    RequestAction,
    RequestOutcome,
    SecretCipher,
    SourceFetcher,
)
from worpen_core.shared.errors import Conflict, InvalidInput, NotFound, Unavailable, WorpenError
from worpen_core.shared.ports import Clock
from worpen_core.shared.streams import close_stream

LABEL_PIPELINE = "worpen.pipeline"
LABEL_RUN = "worpen.pipeline.run"
LABEL_STAGE = "worpen.pipeline.stage"

REQUEST_POLL = 0.2
"""Seconds between two looks at the outcome of a request handed to the replica driving a run."""


class _Stuck(Exception):
    """A stage that cannot be brought to an end the normal way; the message says why."""


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    node_slots: int = 2
    """Pipeline runs one node runs at once."""
    lease_seconds: float = 60.0
    """A RUNNING stage nothing was heard of for this long is marked ERROR."""
    stop_grace_seconds: int = 2
    """A cancelled stage's container is killed after this many seconds."""
    kill_wait_seconds: float = 30.0
    """How long a container killed at its stage's timeout may take to exit before the stage is given up
    as stuck (the engine refused or lost the kill)."""
    node_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Labels of each node, which stages' selectors match (every node also has `node=<name>`)."""
    tick_seconds: float = 2.0
    """How often queued runs and leases are looked at when nothing wakes the scheduler sooner."""
    relay_seconds: float = 10.0
    """How long, beyond the stop grace, a replica waits for the one driving a run to take a cancel or a
    decision asked of it, and then to carry it out."""


_Unwritten = tuple[PipelineRun, StageRun, list[StageLogLine], "asyncio.Future[None]"]
"""Lines of a stage waiting for the log writer, and the future that says they are stored."""


@dataclass(slots=True, eq=False)
class _Driver:
    run: PipelineRun
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    stages: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    ending: dict[str, tuple[StageStatus, str]] = field(default_factory=dict)
    """Stages whose tasks are being cancelled on purpose (lease expired, run cancelled), with the status
    and reason each task is to end with."""
    task: asyncio.Task[None] | None = None


class PipelineExecutor:
    def __init__(
        self,
        uow: PipelinesUnitOfWorkFactory,
        containers: Containers,
        fleet: Fleet,
        fetcher: SourceFetcher,
        cipher: SecretCipher,
        bus: EventBus,
        clock: Clock,
        feed: StageFeed,
        settings: ExecutorSettings,
        requests: PipelineRequests | None = None,
    ) -> None:
        self._uow = uow
        self._requests = requests
        """Cancels and decisions between replicas (several replicas on one database), else None."""
        self._applying: set[asyncio.Task[None]] = set()
        self._containers = containers
        self._fleet = fleet
        self._fetcher = fetcher
        self._cipher = cipher
        self._bus = bus
        self._clock = clock
        self._feed = feed
        self.settings = settings
        self._drivers: dict[str, _Driver] = {}
        self._wake = asyncio.Event()
        self._unwritten: list[_Unwritten] = []
        self._writer: asyncio.Task[None] | None = None
        self.failures = 0
        """Unexpected errors a driver or the scheduler survived."""

    @property
    def running(self) -> int:
        """Runs this process drives now."""
        return len(self._drivers)

    @property
    def followers(self) -> int:
        return self._feed.followers

    def wake(self) -> None:
        """Look at the queue now (a run was queued, a slot freed)."""
        self._wake.set()

    async def resume(self) -> int:
        """Adopt the runs a previous process left active: stages whose containers still run are watched
        again, the others are marked ERROR. Returns how many runs were adopted."""
        async with self._uow() as tx:
            runs = await tx.pipeline_runs.active()
        until = self._clock.now() + timedelta(seconds=self.settings.lease_seconds)
        for run in runs:
            # A lease that ran out while Worpen was down is renewed: the driver looks at the container now.
            for stage in run.stages:
                if stage.status is StageStatus.RUNNING:
                    stage.lease_expires_at = until
            await self._save(run)
            self._adopt(run)
        return len(runs)

    async def serve(self, stopping: asyncio.Event) -> None:
        """The scheduler: place queued runs and expire leases until `stopping` is set."""
        while not stopping.is_set():
            self._wake.clear()  # before looking, so that a wake-up during the look is not lost
            try:
                await self._sweep()
                await self._place()
                await self._take_requests()
            except Unavailable:
                pass  # the database is away: the queue waits for it
            except Exception:
                self.failures += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.tick_seconds)

    async def close(self) -> None:
        """Stop watching (runs stay as they are; the next start adopts them)."""
        tasks = [driver.task for driver in self._drivers.values() if driver.task is not None]
        tasks += [task for driver in self._drivers.values() for task in driver.stages.values()]
        tasks += self._applying
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._drivers.clear()
        if self._writer is not None:  # the lines read before the stop are stored
            await asyncio.gather(self._writer, return_exceptions=True)

    async def wait_finished(self, run_id: str, seconds: float) -> None:
        driver = self._drivers.get(run_id)
        if driver is not None and driver.task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(driver.task), seconds)

    async def cancel(self, run_id: str, by: str) -> bool:
        """Cancel an active run: its containers are stopped (killed after the grace period), what has not
        run is CANCELLED. False when this process does not drive the run."""
        driver = self._drivers.get(run_id)
        if driver is None:
            return False
        run = driver.run
        if run.cancelled_by is None:
            run.cancelled_by = by
        runtime = self._containers.runtime(run.node or "")
        stops = []
        for stage in run.stages:
            task = driver.stages.get(stage.name)
            if stage.status is StageStatus.RUNNING and stage.container_id is not None:
                stops.append(self._stop(runtime, stage.container_id, self.settings.stop_grace_seconds))
            elif task is not None:  # still pulling its image or creating its container
                driver.ending[stage.name] = (StageStatus.CANCELLED, f"cancelled by {run.cancelled_by}")
                task.cancel()
        await asyncio.gather(*stops)
        driver.changed.set()
        return True

    def drives(self, run_id: str) -> bool:
        return run_id in self._drivers

    @property
    def relays(self) -> bool:
        """Whether another replica may drive a run, and take requests for it."""
        return self._requests is not None

    async def relay(self, run_id: str, action: RequestAction, stage: str | None, by: str) -> None:
        """Hand a cancel or a decision to the replica driving the run and wait for it to be carried out:
        Conflict with that replica's message, Unavailable when no replica took it in time."""
        assert self._requests is not None, "only with several replicas (see relays)"
        request = PipelineRequest("req_" + secrets.token_hex(8), run_id, action, stage, by, self._clock.now())
        await self._requests.add(request)
        bound = self.settings.stop_grace_seconds + self.settings.relay_seconds
        try:
            outcome = await self._outcome(request.id, bound)
            if outcome is None and not await self._requests.withdraw(request.id):
                outcome = await self._outcome(request.id, bound)  # taken meanwhile: it is being carried out
        finally:
            await self._requests.remove(request.id)
        if outcome is None:
            raise Unavailable("pipeline executor", f"no replica took the {action} of run {run_id} in time")
        if outcome.conflict is not None:
            raise Conflict(outcome.conflict)

    async def _outcome(self, request_id: str, seconds: float) -> RequestOutcome | None:
        assert self._requests is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            outcome = await self._requests.outcome(request_id)
            if outcome is not None or loop.time() >= deadline:
                return outcome
            await asyncio.sleep(REQUEST_POLL)

    async def _take_requests(self) -> None:
        """Take the requests other replicas left for the runs this one drives; each is carried out in a
        task of its own (a cancel waits for containers to stop) while the scheduler goes on."""
        if self._requests is None or not self._drivers:
            return
        for request in await self._requests.open_for(list(self._drivers)):
            if await self._requests.take(request.id):
                task = asyncio.create_task(self._apply(request), name=f"pipeline request {request.id}")
                self._applying.add(task)
                task.add_done_callback(self._applying.discard)

    async def _apply(self, request: PipelineRequest) -> None:
        assert self._requests is not None
        conflict: str | None = None
        try:
            try:
                if request.action == "cancel":
                    conflict = await self._cancel_requested(request)
                else:
                    approve = request.action == "approve"
                    await self.decide(request.run_id, request.stage or "", approve=approve, by=request.by)
            except Conflict as exc:
                conflict = exc.detail
            await self._requests.answer(request.id, RequestOutcome(conflict))
        except Unavailable:
            pass  # the database is away: the asker answers 503 when its wait ends
        except Exception:
            self.failures += 1

    async def _cancel_requested(self, request: PipelineRequest) -> str | None:
        """Cancel as the service does on the replica driving the run; the Conflict message, if any."""
        if await self.cancel(request.run_id, request.by):
            await self.wait_finished(request.run_id, self.settings.stop_grace_seconds + 10)
            return None
        async with self._uow() as tx:  # it ended between the request and now
            run = await tx.pipeline_runs.get(request.run_id)
        status = run.status.value if run is not None else "gone"
        return f"run {request.run_id} already finished ({status})"

    async def cancelled_while_queued(self, run: PipelineRun) -> None:
        """Tell followers and the event history that a run cancelled before it got a node has ended."""
        for stage in run.stages:
            self._feed.end(run.id, stage.name, stage.status)
        await self._run_finished(run)

    async def decide(self, run_id: str, stage_name: str, *, approve: bool, by: str) -> None:
        driver = self._drivers.get(run_id)
        if driver is None:
            raise Conflict(f"run {run_id} is not waiting for an approval")
        stage = driver.run.stage(stage_name)
        if stage.status is not StageStatus.BLOCKED:
            raise Conflict(f"stage {stage_name!r} is {stage.status.value}, not waiting for an approval")
        stage.decided_by = by
        if approve:
            stage.status = StageStatus.PENDING
        else:
            stage.status = StageStatus.SKIPPED
            stage.error = f"declined by {by}"
            stage.finished_at = self._clock.now()
        await self._save(driver.run)
        if not approve:
            await self._stage_finished(driver.run, stage)
        driver.changed.set()

    # The scheduler

    async def _place(self) -> None:
        async with self._uow() as tx:
            pending = await tx.pipeline_runs.pending()
            used = await tx.pipeline_runs.used_slots()
        if not pending:
            return
        limit = self.settings.node_slots
        nodes = [status.node for status in self._containers.engines() if status.available is not False]
        for run in pending:
            wanted = run.node_labels()
            fits = [node for node in nodes if _matches(self._labels(node), wanted)]
            for node in sorted(fits, key=lambda node: self._load(node, used.get(node, 0))):
                if used.get(node, 0) >= limit:
                    continue
                async with self._uow() as tx:
                    reserved = await tx.pipeline_runs.reserve(run.id, node, limit, self._clock.now())
                    await tx.commit()
                if reserved:
                    used[node] = used.get(node, 0) + 1
                    async with self._uow() as tx:
                        placed = await tx.pipeline_runs.get(run.id)
                    if placed is not None:
                        self._adopt(placed)
                    break

    def _labels(self, node: str) -> dict[str, str]:
        return {**self.settings.node_labels.get(node, {}), **self._containers.labels(node), "node": node}

    def _load(self, node: str, used: int) -> float:
        """Lower is better: the node's cpu and memory when it is also a reporting agent, otherwise the
        share of its slots in use."""
        with contextlib.suppress(NotFound):
            agent = self._fleet.get(node)
            if agent.status is not AgentStatus.OFFLINE:
                return (agent.readings.cpu + agent.readings.ram) / 2
        return 100 * used / self.settings.node_slots

    async def _sweep(self) -> None:
        async with self._uow() as tx:
            expired = await tx.pipeline_runs.expired(self._clock.now())
        for run_id, stage_name in expired:
            driver = self._drivers.get(run_id)
            if driver is None:
                async with self._uow() as tx:
                    run = await tx.pipeline_runs.get(run_id)
                if run is None or run.status.finished:
                    continue
                driver = self._adopt(run)
            stage = driver.run.stage(stage_name)
            if stage.status is not StageStatus.RUNNING or stage_name in driver.ending:
                continue
            seconds = round(self.settings.lease_seconds)
            reason = (
                f"lease expired: nothing heard of its container on node {driver.run.node} for {seconds} s"
            )
            driver.ending[stage_name] = (StageStatus.ERROR, reason)
            task = driver.stages.get(stage_name)
            if task is not None:
                task.cancel()
            else:
                await self._end_stage(driver, stage, StageStatus.ERROR, None, reason)

    # Driving one run

    def _adopt(self, run: PipelineRun) -> _Driver:
        driver = self._drivers.get(run.id)
        if driver is None:
            driver = _Driver(run)
            self._drivers[run.id] = driver
            driver.task = asyncio.create_task(self._drive(driver), name=f"pipeline run {run.id}")
        return driver

    async def _drive(self, driver: _Driver) -> None:
        run = driver.run
        try:
            runtime = self._containers.runtime(run.node or "")
            driver.secrets = await self._open_secrets(run)
            if all(stage.status is StageStatus.PENDING for stage in run.stages):
                await self._prepare(run, runtime)
            leases = asyncio.create_task(self._keep_leases(driver, runtime))
            try:
                await self._advance(driver, runtime)
            finally:
                leases.cancel()
            await self._finish(driver, runtime)
        except asyncio.CancelledError:
            raise
        except WorpenError as exc:
            await self._abort(driver, exc.detail)
        except Exception as exc:
            self.failures += 1
            await self._abort(driver, f"unexpected error: {exc!r}")
        finally:
            if run.status.finished and self._drivers.get(run.id) is driver:
                del self._drivers[run.id]
                self.wake()

    async def _prepare(self, run: PipelineRun, runtime: ContainerRuntime) -> None:
        """Fetch the source and copy it into a new workspace volume on the run's node."""
        source = await self._fetcher.fetch(run.repository, run.branch, run.commit)
        run.commit, run.author, run.message = source.commit, source.author, source.message
        run.status = RunStatus.RUNNING
        await self._save(run)
        await self._publish(
            PipelineRunStarted(
                run.id,
                run.pipeline_id,
                run.number,
                self._clock.now(),
                node=run.node or "",
                commit=run.commit,
                trigger=run.trigger,
                triggered_by=run.triggered_by,
            )
        )
        with contextlib.suppress(Conflict):  # a previous process created it before it stopped
            await runtime.create_volume(_volume(run), _labels(run))
        seed = await self._create(
            runtime,
            WorkloadSpec(
                name=f"worpen-{run.id}-source",
                image=run.stages[0].spec.image,
                command=("true",),
                labels=_labels(run),
                volume=_volume(run),
                mount_path=WORKSPACE,
            ),
        )
        try:
            await runtime.put_archive(seed, WORKSPACE, source.archive)
        finally:
            await _remove(runtime, seed)

    async def _advance(self, driver: _Driver, runtime: ContainerRuntime) -> None:
        run = driver.run
        while True:
            driver.changed.clear()
            for stage in run.stages:
                await self._consider(driver, runtime, stage)
            if all(stage.status.finished for stage in run.stages) and not driver.stages:
                return
            running = any(stage.status is StageStatus.RUNNING for stage in run.stages) or driver.stages
            blocked = any(stage.status is StageStatus.BLOCKED for stage in run.stages)
            status = RunStatus.BLOCKED if blocked and not running else RunStatus.RUNNING
            if status is not run.status:
                run.status = status
                await self._save(run)
            await driver.changed.wait()

    async def _consider(self, driver: _Driver, runtime: ContainerRuntime, stage: StageRun) -> None:
        """Start, skip, block or cancel one stage as the run's state allows."""
        run = driver.run
        if stage.name in driver.stages:
            return
        if stage.status is StageStatus.RUNNING:
            self._start(driver, runtime, stage)
            return
        if stage.status not in (StageStatus.PENDING, StageStatus.BLOCKED):
            return
        if run.cancelled_by is not None:
            await self._end_stage(
                driver, stage, StageStatus.CANCELLED, None, f"cancelled by {run.cancelled_by}"
            )
            return
        if stage.status is StageStatus.BLOCKED:
            return
        needs = [run.stage(name) for name in stage.spec.depends_on]
        failed = [need for need in needs if need.status.finished and need.status is not StageStatus.SUCCESS]
        if failed:
            reason = ", ".join(f"{need.name} {need.status.value}" for need in failed)
            await self._end_stage(driver, stage, StageStatus.SKIPPED, None, f"needs {reason}")
        elif all(need.status is StageStatus.SUCCESS for need in needs):
            if stage.spec.approval and stage.decided_by is None:
                stage.status = StageStatus.BLOCKED
                await self._save(run)
            else:
                self._start(driver, runtime, stage)

    def _start(self, driver: _Driver, runtime: ContainerRuntime, stage: StageRun) -> None:
        task = asyncio.create_task(self._stage(driver, runtime, stage), name=f"stage {stage.name}")
        driver.stages[stage.name] = task

        def done(_: asyncio.Task[None]) -> None:
            driver.stages.pop(stage.name, None)
            driver.changed.set()

        task.add_done_callback(done)

    async def _stage(self, driver: _Driver, runtime: ContainerRuntime, stage: StageRun) -> None:
        run = driver.run
        try:
            if stage.container_id is None:
                await self._launch_within_timeout(driver, runtime, stage)
            elif not await self._reattach(runtime, stage):
                gone = "its container is gone (Worpen restarted meanwhile)"
                await self._end_stage(driver, stage, StageStatus.ERROR, None, gone)
                return
            code, timed_out = await self._watch(driver, runtime, stage)
        except asyncio.CancelledError:
            ending = driver.ending.get(stage.name)
            if ending is None:
                raise
            await self._end_stage(driver, stage, ending[0], None, ending[1])
            return
        except WorpenError as exc:
            await self._end_stage(driver, stage, StageStatus.ERROR, None, exc.detail)
            return
        except _Stuck as exc:
            await self._end_stage(driver, stage, StageStatus.ERROR, None, str(exc))
            return
        except Exception as exc:
            self.failures += 1
            await self._end_stage(driver, stage, StageStatus.ERROR, None, f"unexpected error: {exc!r}")
            return
        if run.cancelled_by is not None:
            status, error = StageStatus.CANCELLED, f"cancelled by {run.cancelled_by}"
        elif timed_out:
            status, error = StageStatus.FAILED, f"timed out after {stage.spec.timeout_seconds} s"
        elif code == 0:
            status, error = StageStatus.SUCCESS, None
        else:
            status, error = StageStatus.FAILED, f"exited with code {code}"
        await self._end_stage(driver, stage, status, code, error)
        keep = run.keep_on_failure and status in (StageStatus.FAILED, StageStatus.ERROR)
        if not keep and stage.container_id is not None:
            await _remove(runtime, stage.container_id)

    async def _launch_within_timeout(
        self, driver: _Driver, runtime: ContainerRuntime, stage: StageRun
    ) -> None:
        """Pulling the image and creating the container count against the stage's timeout."""
        try:
            await asyncio.wait_for(self._launch(driver, runtime, stage), stage.spec.timeout_seconds)
        except TimeoutError:
            raise _Stuck(
                f"not started within its timeout ({stage.spec.timeout_seconds} s): pulling its image "
                "or creating its container took too long"
            ) from None

    async def _launch(self, driver: _Driver, runtime: ContainerRuntime, stage: StageRun) -> None:
        run = driver.run
        env = {
            "CI": "true",
            "WORPEN_PIPELINE": run.pipeline_id,
            "WORPEN_RUN": run.id,
            "WORPEN_RUN_NUMBER": str(run.number),
            "WORPEN_BRANCH": run.branch,
            "WORPEN_COMMIT": run.commit or "",
            "WORPEN_STAGE": stage.name,
            "WORPEN_WORKSPACE": WORKSPACE,
            **stage.spec.env,
            **{name: driver.secrets[name] for name in stage.spec.secrets},
        }
        spec = WorkloadSpec(
            name=f"worpen-{run.id}-{stage.name}",
            image=stage.spec.image,
            command=("/bin/sh", "-c", stage_script(stage.spec.commands)),
            env=env,
            labels={**_labels(run), LABEL_STAGE: stage.name},
            volume=_volume(run),
            mount_path=WORKSPACE,
        )
        container = await self._create(runtime, spec)
        now = self._clock.now()
        stage.container_id, stage.status, stage.started_at = container, StageStatus.RUNNING, now
        stage.lease_expires_at = now + timedelta(seconds=self.settings.lease_seconds)
        await self._save(run)
        await runtime.start(container)
        if run.cancelled_by is not None:  # cancelled while it was being created
            await self._stop(runtime, container, self.settings.stop_grace_seconds)

    async def _reattach(self, runtime: ContainerRuntime, stage: StageRun) -> bool:
        """Whether the stage's container is still there (started again if it was only created)."""
        assert stage.container_id is not None
        try:
            detail = await runtime.inspect(stage.container_id)
        except NotFound:
            return False
        if detail.container.state is ContainerState.CREATED:
            await runtime.start(stage.container_id)
        return True

    async def _watch(self, driver: _Driver, runtime: ContainerRuntime, stage: StageRun) -> tuple[int, bool]:
        """Follow the stage's log while waiting for its container to exit, killing it at its timeout."""
        assert stage.container_id is not None
        assert stage.started_at is not None
        logs = asyncio.create_task(self._pump(driver, runtime, stage))
        deadline = stage.started_at + timedelta(seconds=stage.spec.timeout_seconds)
        remaining = max(0.0, (deadline - self._clock.now()).total_seconds())
        timed_out = False
        try:
            try:
                code = await asyncio.wait_for(runtime.wait(stage.container_id), remaining)
            except TimeoutError:
                timed_out = True
                await self._stop(runtime, stage.container_id, 0)
                try:
                    code = await asyncio.wait_for(
                        runtime.wait(stage.container_id), self.settings.kill_wait_seconds
                    )
                except TimeoutError:
                    raise _Stuck(
                        f"timed out after {stage.spec.timeout_seconds} s and its container could not be "
                        f"stopped on node {runtime.node}"
                    ) from None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(logs), 10)
        finally:
            logs.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await logs
        return code, timed_out

    async def _pump(self, driver: _Driver, runtime: ContainerRuntime, stage: StageRun) -> None:
        """Store the stage's log, masked, batch by batch as it comes, and hand it to the followers. After
        a restart it goes on after the last stored line."""
        assert stage.container_id is not None
        run = driver.run
        since: datetime | None = None
        if stage.log_lines:
            async with self._uow() as tx:
                last = await tx.stage_logs.read(run.id, stage.name, stage.log_lines - 1, 1)
            since = last[0].at if last else None
        book = LogBook(driver.secrets.values(), stage.log_lines + 1)
        stream = await runtime.logs(stage.container_id, LogQuery(tail=None, since=since, follow=True))
        try:
            async for batch in stream:
                fresh = [line for line in batch if since is None or line.at is None or line.at > since]
                await self._store(run, stage, book.add(fresh, self._clock.now()))
        finally:
            await close_stream(stream)
            await self._store(run, stage, book.flush(self._clock.now()))

    async def _store(self, run: PipelineRun, stage: StageRun, lines: Sequence[StageLogLine]) -> None:
        """Store lines and then hand them to the followers. Every stage's lines go through one writer:
        what is pending when a commit ends goes into the next, so many stages printing at once take a
        few commits (each waits for the disk), not one each."""
        if not lines:
            return
        written = asyncio.get_running_loop().create_future()
        self._unwritten.append((run, stage, list(lines), written))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_logs(), name="pipeline stage logs")
        await written

    async def _write_logs(self) -> None:
        while self._unwritten:
            batch, self._unwritten = self._unwritten, []
            try:
                await self._until_written(partial(self._append, batch))
            except Exception as exc:
                for *_, written in batch:
                    if not written.done():
                        written.set_exception(exc)
                continue
            for run, stage, lines, written in batch:
                stage.log_lines = lines[-1].number
                self._feed.publish(run.id, stage.name, lines)
                if not written.done():
                    written.set_result(None)

    async def _append(self, batch: Sequence[_Unwritten]) -> None:
        async with self._uow() as tx:
            for run, stage, lines, _ in batch:
                await tx.stage_logs.append(run.id, stage.name, lines)
            await tx.commit()

    async def _keep_leases(self, driver: _Driver, runtime: ContainerRuntime) -> None:
        """Extend the lease of each RUNNING stage whose container the engine still answers for."""
        period = self.settings.lease_seconds / 3
        while True:
            await asyncio.sleep(period)
            for stage in driver.run.stages:
                if stage.status is not StageStatus.RUNNING or stage.container_id is None:
                    continue
                try:
                    await runtime.inspect(stage.container_id)
                except WorpenError:
                    continue
                until = self._clock.now() + timedelta(seconds=self.settings.lease_seconds)
                with contextlib.suppress(Unavailable):
                    async with self._uow() as tx:
                        await tx.pipeline_runs.extend_lease(driver.run.id, stage.name, until)
                        await tx.commit()
                    stage.lease_expires_at = until

    async def _end_stage(
        self, driver: _Driver, stage: StageRun, status: StageStatus, code: int | None, error: str | None
    ) -> None:
        stage.status, stage.exit_code, stage.error = status, code, error
        stage.finished_at = self._clock.now()
        stage.lease_expires_at = None
        await self._save(driver.run)
        await self._stage_finished(driver.run, stage)
        driver.changed.set()

    async def _stage_finished(self, run: PipelineRun, stage: StageRun) -> None:
        self._feed.end(run.id, stage.name, stage.status)
        await self._publish(
            PipelineStageFinished(
                run.id,
                run.pipeline_id,
                run.number,
                self._clock.now(),
                stage=stage.name,
                status=stage.status,
                exit_code=stage.exit_code,
                node=run.node,
                error=stage.error,
            )
        )

    async def _finish(self, driver: _Driver, runtime: ContainerRuntime) -> None:
        run = driver.run
        run.status, run.error = outcome(run)
        run.finished_at = self._clock.now()
        await self._save(run)
        await self._run_finished(run)
        if not (run.keep_on_failure and run.status in (RunStatus.FAILED, RunStatus.ERROR)):
            with contextlib.suppress(WorpenError):
                await runtime.remove_volume(_volume(run))

    async def _abort(self, driver: _Driver, reason: str) -> None:
        """The run cannot go on (its source could not be fetched, its node is unknown...): ERROR, and
        what did not run is SKIPPED."""
        run = driver.run
        for task in list(driver.stages.values()):
            task.cancel()
        await asyncio.gather(*driver.stages.values(), return_exceptions=True)
        now = self._clock.now()
        for stage in run.stages:
            if not stage.status.finished:
                stage.status = (
                    StageStatus.ERROR if stage.status is StageStatus.RUNNING else StageStatus.SKIPPED
                )
                stage.error, stage.finished_at, stage.lease_expires_at = reason, now, None
                self._feed.end(run.id, stage.name, stage.status)
        run.status = RunStatus.CANCELLED if run.cancelled_by is not None else RunStatus.ERROR
        run.error, run.finished_at = reason, now
        await self._save(run)
        await self._run_finished(run)
        with contextlib.suppress(WorpenError):
            await self._containers.runtime(run.node or "").remove_volume(_volume(run))

    async def _run_finished(self, run: PipelineRun) -> None:
        took = (
            (run.finished_at - run.started_at).total_seconds() if run.finished_at and run.started_at else None
        )
        await self._publish(
            PipelineRunFinished(
                run.id,
                run.pipeline_id,
                run.number,
                self._clock.now(),
                status=run.status,
                node=run.node,
                error=run.error,
                duration_seconds=took,
            )
        )

    async def _open_secrets(self, run: PipelineRun) -> dict[str, str]:
        names = sorted({name for stage in run.stages for name in stage.spec.secrets})
        if not names:
            return {}
        async with self._uow() as tx:
            stored = await tx.secrets.get_many(names)
        missing = [name for name in names if name not in stored]
        if missing:
            raise InvalidInput(f"secret {', '.join(missing)} is not defined (POST /api/v1/pipelines/secrets)")
        return {name: self._cipher.open(secret.sealed) for name, secret in stored.items()}

    async def _create(self, runtime: ContainerRuntime, spec: WorkloadSpec) -> str:
        """Create the container, pulling its image when the node lacks it, and replacing a container of
        the same name a previous process left behind."""
        for _ in range(3):
            try:
                return await runtime.create(spec)
            except NotFound as exc:
                if exc.kind != "image":
                    raise
                await self._pull(runtime, spec.image)
            except Conflict:
                await _remove(runtime, spec.name)
        return await runtime.create(spec)

    async def _pull(self, runtime: ContainerRuntime, image: str) -> None:
        try:
            progress = await runtime.pull(image)
            try:
                async for _ in progress:
                    pass
            finally:
                await close_stream(progress)
        except WorpenError as exc:
            raise InvalidInput(
                f"image {image} is not on node {runtime.node} and could not be pulled: {exc.detail}"
            ) from exc

    async def _stop(self, runtime: ContainerRuntime, container: str | None, grace: int) -> None:
        if container is not None:
            with contextlib.suppress(WorpenError):
                await runtime.stop(container, grace)

    async def _save(self, run: PipelineRun) -> None:
        async def save() -> None:
            async with self._uow() as tx:
                await tx.pipeline_runs.save(run)
                await tx.commit()

        await self._until_written(save)

    async def _until_written(self, write: Callable[[], Awaitable[None]]) -> None:
        """Write, waiting for the database to come back if it is away: the run goes on in memory and
        what it did is written as soon as it can be."""
        delay = 0.2
        while True:
            try:
                await write()
                return
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish(self, event: Event) -> None:
        with contextlib.suppress(WorpenError):
            await self._bus.publish([event])


class LogBook:
    """Turns a container's log lines into a stage's numbered, masked lines. Secrets are masked in each
    stream as a whole, so one cut across two writes is masked too."""

    def __init__(self, secrets: Iterable[str], first: int) -> None:
        values = list(secrets)
        self._masks = {stream: StreamMask(values) for stream in ("stdout", "stderr")}
        self._partial = {"stdout": "", "stderr": ""}
        self._next = first

    def add(self, lines: Sequence[LogLine], now: datetime) -> list[StageLogLine]:
        out: list[StageLogLine] = []
        for line in lines:
            stream = line.stream.value
            text = self._partial[stream] + self._masks[stream].feed(line.text + "\n")
            *complete, self._partial[stream] = text.split("\n")
            out.extend(self._numbered(stream, complete, line.at or now))
        return out

    def flush(self, now: datetime) -> list[StageLogLine]:
        out: list[StageLogLine] = []
        for stream, mask in self._masks.items():
            rest = self._partial[stream] + mask.flush()
            self._partial[stream] = ""
            if rest:
                out.extend(self._numbered(stream, rest.removesuffix("\n").split("\n"), now))
        return out

    def _numbered(self, stream: str, texts: Sequence[str], at: datetime) -> list[StageLogLine]:
        lines = [StageLogLine(self._next + index, stream, text, at) for index, text in enumerate(texts)]
        self._next += len(texts)
        return lines


def stage_script(commands: Sequence[str]) -> str:
    """The shell script of a stage: each command echoed (`+ command`) then run, stopping at the first
    that fails."""
    lines = ["set -e"]
    for command in commands:
        # printf, not echo: some shells' echo reads backslashes in what it prints.
        lines.append(f"printf '%s\\n' {shlex.quote('+ ' + command)}")
        lines.append(command)
    return "\n".join(lines) + "\n"


def outcome(run: PipelineRun) -> tuple[RunStatus, str | None]:
    """A finished run's status, from its stages."""
    if run.cancelled_by is not None:
        return RunStatus.CANCELLED, f"cancelled by {run.cancelled_by}"
    for status, run_status in ((StageStatus.ERROR, RunStatus.ERROR), (StageStatus.FAILED, RunStatus.FAILED)):
        for stage in run.stages:
            if stage.status is status:
                return run_status, f"stage {stage.name}: {stage.error}"
    for stage in run.stages:
        if stage.status is StageStatus.SKIPPED and stage.decided_by is not None:
            return RunStatus.CANCELLED, f"stage {stage.name} {stage.error}"
    return RunStatus.SUCCESS, None


def _matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())


def _volume(run: PipelineRun) -> str:
    return f"worpen-{run.id}-workspace"


def _labels(run: PipelineRun) -> dict[str, str]:
    return {WORKLOAD_LABEL: "pipeline", LABEL_PIPELINE: run.pipeline_id, LABEL_RUN: run.id}


async def _remove(runtime: ContainerRuntime, container: str) -> None:
    with contextlib.suppress(WorpenError):
        await runtime.remove(container, force=True, volumes=False)
