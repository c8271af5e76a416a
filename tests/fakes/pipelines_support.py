"""What pipelines' unit tests run against: a source fetcher, a cipher and a cron in memory, an engine whose
stage containers print lines, wait to be released and die when stopped, and the whole executor and use
cases wired on fakes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tests.fakes.bus import FakeEventBus
from tests.fakes.clock import FakeClock
from tests.fakes.containers import FakeRuntime
from tests.fakes.storage import FakeUnitOfWorkFactory
from worpen_core.access.model import Principal, Role
from worpen_core.audit.service import AuditTrail
from worpen_core.containers.model import (
    Container,
    ContainerDetail,
    ContainerState,
    LogLine,
    LogQuery,
    LogStream,
    PullProgress,
)
from worpen_core.containers.service import ContainerLimits, Containers
from worpen_core.events.ports import JournalSignal
from worpen_core.fleet.model import FleetPolicy
from worpen_core.fleet.service import Fleet
from worpen_core.pipelines.commands import PipelineDraft, StageDraft
from worpen_core.pipelines.executor import LABEL_STAGE, ExecutorSettings, PipelineExecutor
from worpen_core.pipelines.feed import StageFeed
from worpen_core.pipelines.model import PipelineRun, Source
from worpen_core.pipelines.ports import PipelineRequests
from worpen_core.pipelines.service import Pipelines
from worpen_core.shared.errors import InvalidInput, WorpenError

KILLED = 137
"""The exit code of a container killed by SIGKILL."""
COMMIT = "0123456789abcdef0123456789abcdef01234567"
IMAGE = "worpen-test/busybox:1"
OPERATOR = Principal("key-ops", "ops", Role.OPERATOR)
ADMIN = Principal("key-admin", "root", Role.ADMIN)


def tar_of(files: Mapping[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class FakeSourceFetcher:
    """Fetches a small tar of `files` at COMMIT (or the commit asked for); `error` makes fetches fail."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"README": b"hello\n"}
        self.error: WorpenError | None = None
        self.refused: dict[str, str] = {}
        """Repositories `check` refuses, with the reason."""
        self.fetched: list[tuple[str, str, str | None]] = []

    def check(self, repository: str) -> str | None:
        return self.refused.get(repository)

    async def fetch(self, repository: str, branch: str, commit: str | None) -> Source:
        self.fetched.append((repository, branch, commit))
        if self.error is not None:
            raise self.error
        return Source(commit or COMMIT, tar_of(self.files), author="dev", message="a change")


class FakeSecretCipher:
    """Seals by reversing the value behind a marker; refuses what it did not seal."""

    def seal(self, value: str) -> bytes:
        return b"sealed:" + value.encode()[::-1]

    def open(self, sealed: bytes) -> str:
        if not sealed.startswith(b"sealed:"):
            raise InvalidInput("not sealed with this key")
        return sealed.removeprefix(b"sealed:")[::-1].decode()


class EveryMinute:
    """A cron that knows one expression, `* * * * *`."""

    def check(self, expression: str) -> str | None:
        return None if expression == "* * * * *" else "only '* * * * *' is known here"

    def next_after(self, expression: str, after: datetime) -> datetime:
        return after.replace(second=0, microsecond=0) + timedelta(minutes=1)


class StageRuntime(FakeRuntime):
    """A FakeRuntime whose stage containers print `output[stage]`, wait for `holds[stage]` (or `hold`)
    when one is set, exit with `codes[stage]` (or `exit_codes` by name, else 0), and die with 137 when
    stopped. `inspect` knows the containers it created."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self.output: dict[str, list[LogLine]] = {}
        self.codes: dict[str, int] = {}
        self.holds: dict[str, asyncio.Event] = {}
        self.waiting: set[str] = set()
        """Stages whose container is being waited for right now."""
        self.stops: list[tuple[str, int | None]] = []
        """(container name, grace) of each stop."""
        self.log_error: BaseException | None = None
        """Raised by every log stream once its lines are read."""
        self.pull_stalls = True
        """False: a pull ends at once (without bringing the image)."""
        self.pulls: list[str] = []
        self._killed: dict[str, asyncio.Event] = {}

    def stage_of(self, ref: str) -> str:
        return self.workloads[self._workload(ref)].labels.get(LABEL_STAGE, "")

    async def inspect(self, ref: str) -> ContainerDetail:
        self._check()
        workload = self._workload(ref)
        spec = self.workloads[workload]
        killed = self._killed.get(workload)
        state = ContainerState.EXITED if killed is not None and killed.is_set() else ContainerState.RUNNING
        created = datetime(2026, 1, 1).astimezone()
        container = Container(workload, spec.name, spec.image, state, "Up", self.node, created)
        return ContainerDetail(
            container, (), (), {}, "", "", "", "no", (), {}, 0, None, False, "", None, None, None
        )

    async def logs(self, ref: str, query: LogQuery) -> AsyncIterator[Sequence[LogLine]]:
        self._check()
        return self._lines(list(self.output.get(self.stage_of(ref), [])))

    async def _lines(self, lines: list[LogLine]) -> AsyncIterator[Sequence[LogLine]]:
        for line in lines:
            yield [line]
        if self.log_error is not None:
            raise self.log_error

    async def pull(self, image: str) -> AsyncIterator[PullProgress]:
        self.pulls.append(image)
        if self.pull_stalls:
            return await super().pull(image)
        return _no_progress()

    async def stop(self, ref: str, grace_seconds: int | None) -> None:
        self._check()
        workload = self._workload(ref)
        self.stops.append((self.workloads[workload].name, grace_seconds))
        self._killed.setdefault(workload, asyncio.Event()).set()

    async def wait(self, ref: str) -> int:
        self._check()
        workload = self._workload(ref)
        spec = self.workloads[workload]
        stage = spec.labels.get(LABEL_STAGE, "")
        killed = self._killed.setdefault(workload, asyncio.Event())
        hold = self.holds.get(stage, self.hold)
        self.waiting.add(stage)
        try:
            if hold is not None:
                await _first(hold.wait(), killed.wait())
        finally:
            self.waiting.discard(stage)
        if killed.is_set():
            return KILLED
        return self.codes.get(stage, self.exit_codes.get(spec.name, 0))


async def _no_progress() -> AsyncIterator[PullProgress]:
    """A pull that ends at once."""
    nothing: tuple[PullProgress, ...] = ()
    for progress in nothing:
        yield progress


async def _first(*waits: Awaitable[bool]) -> None:
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def stdout(*texts: str) -> list[LogLine]:
    return [LogLine(LogStream.STDOUT, text) for text in texts]


def stage(
    name: str,
    *commands: str,
    image: str = IMAGE,
    env: Mapping[str, str] | None = None,
    secrets: tuple[str, ...] = (),
    timeout_seconds: int | None = None,
    depends_on: tuple[str, ...] | None = None,
    approval: bool = False,
    node_labels: Mapping[str, str] | None = None,
) -> StageDraft:
    return StageDraft(
        name,
        image,
        commands or ("make",),
        dict(env or {}),
        secrets,
        timeout_seconds,
        depends_on,
        approval,
        dict(node_labels or {}),
    )


def draft(
    *stages: StageDraft,
    pipeline_id: str = "app",
    repository: str = "https://git.example.com/team/app.git",
    branch: str = "main",
    cron: str | None = None,
    webhook_secret: str | None = None,
    keep_on_failure: bool = False,
) -> PipelineDraft:
    return PipelineDraft(
        pipeline_id, "The app", repository, branch, stages, cron, webhook_secret, keep_on_failure
    )


@dataclass
class PipelineWorld:
    uow: FakeUnitOfWorkFactory
    clock: FakeClock
    bus: FakeEventBus
    runtimes: dict[str, StageRuntime]
    fetcher: FakeSourceFetcher
    cipher: FakeSecretCipher
    feed: StageFeed
    executor: PipelineExecutor
    pipelines: Pipelines
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The scheduler runs (and the drivers it starts) until the block ends."""
        self.stopping.clear()
        task = asyncio.create_task(self.executor.serve(self.stopping))
        try:
            yield
        finally:
            self.stopping.set()
            self.executor.wake()
            await task
            await self.executor.close()

    async def run_of(self, run_id: str) -> PipelineRun:
        async with self.uow() as tx:
            run = await tx.pipeline_runs.get(run_id)
        assert run is not None
        return run

    async def until(
        self, run_id: str, check: Callable[[PipelineRun], bool], seconds: float = 5.0
    ) -> PipelineRun:
        """The stored run once `check` holds for it; fails with the run as it last was."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            run = await self.run_of(run_id)
            if check(run):
                return run
            if loop.time() > deadline:
                states = {stage.name: (stage.status.value, stage.error) for stage in run.stages}
                raise AssertionError(f"run {run.status.value} ({run.error}), stages {states}")
            await asyncio.sleep(0.01)


async def eventually(check: Callable[[], bool], seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check():
        if loop.time() > deadline:
            raise AssertionError("the condition did not hold in time")
        await asyncio.sleep(0.01)


def pipeline_world(
    nodes: Iterable[str] = ("n1",),
    settings: ExecutorSettings | None = None,
    feed_capacity: int = 1000,
    clock: FakeClock | None = None,
    uow: FakeUnitOfWorkFactory | None = None,
    engine: Callable[[str], StageRuntime] = StageRuntime,
    feed_signal: JournalSignal | None = None,
    requests: PipelineRequests | None = None,
) -> PipelineWorld:
    uow = uow or FakeUnitOfWorkFactory()
    clock = clock or FakeClock()
    bus = FakeEventBus()
    runtimes = {node: engine(node) for node in nodes}
    audit = AuditTrail(uow, clock, bus)
    containers = Containers(list(runtimes.values()), audit, clock, bus, ContainerLimits())
    fleet = Fleet(uow, bus, clock, FleetPolicy())
    fetcher = FakeSourceFetcher()
    cipher = FakeSecretCipher()
    feed = StageFeed(feed_capacity, feed_signal, poll=0.05)
    executor = PipelineExecutor(
        uow,
        containers,
        fleet,
        fetcher,
        cipher,
        bus,
        clock,
        feed,
        settings or ExecutorSettings(tick_seconds=0.05),
        requests,
    )
    pipelines = Pipelines(uow, executor, fetcher, cipher, EveryMinute(), audit, clock, feed)
    return PipelineWorld(uow, clock, bus, runtimes, fetcher, cipher, feed, executor, pipelines)
