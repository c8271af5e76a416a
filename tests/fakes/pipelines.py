"""Pipelines' repositories, in memory: what a transaction writes is staged, and reaches the tables that every
unit of work of one Store shares when it commits. Runs are kept as copies, with their queue position."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from datetime import datetime
from weakref import WeakKeyDictionary

from tests.fakes.automation import _Table
from tests.fakes.store import Store
from worpen_core.pipelines.model import (
    Pipeline,
    PipelineRun,
    PipelineSecret,
    RunQuery,
    RunStatus,
    StageLogLine,
    StageRun,
    StageStatus,
)
from worpen_core.shared.errors import Conflict


@dataclasses.dataclass
class _Tables:
    pipelines: dict[str, Pipeline] = dataclasses.field(default_factory=dict)
    cron_slots: dict[str, datetime] = dataclasses.field(default_factory=dict)
    runs: dict[str, tuple[int, PipelineRun]] = dataclasses.field(default_factory=dict)
    """By id: the run's queue position (`seq`) and the run."""
    logs: dict[tuple[str, str, int], StageLogLine] = dataclasses.field(default_factory=dict)
    secrets: dict[str, PipelineSecret] = dataclasses.field(default_factory=dict)


_tables: WeakKeyDictionary[Store, _Tables] = WeakKeyDictionary()
"""Pipelines' tables of each Store (kept beside it, as the Store has no fields of pipelines')."""


class FakePipelineRepository:
    def __init__(self, pipelines: _Table[str, Pipeline], cron_slots: _Table[str, datetime]) -> None:
        self._pipelines = pipelines
        self._cron_slots = cron_slots

    async def add(self, pipeline: Pipeline) -> None:
        if self._pipelines.get(pipeline.id) is not None:
            raise Conflict(f"a pipeline with the id {pipeline.id!r} exists")
        self._pipelines.put(pipeline.id, pipeline)

    async def update(self, pipeline: Pipeline) -> None:
        if self._pipelines.get(pipeline.id) is not None:
            self._pipelines.put(pipeline.id, pipeline)

    async def get(self, pipeline_id: str) -> Pipeline | None:
        return self._pipelines.get(pipeline_id)

    async def list_all(self) -> list[Pipeline]:
        return sorted(self._pipelines.rows().values(), key=lambda pipeline: pipeline.id)

    async def delete(self, pipeline_id: str) -> bool:
        self._cron_slots.remove(pipeline_id)
        return self._pipelines.remove(pipeline_id)

    async def claim_cron_slot(self, pipeline_id: str, slot: datetime) -> bool:
        last = self._cron_slots.get(pipeline_id)
        if self._pipelines.get(pipeline_id) is None or (last is not None and last >= slot):
            return False
        self._cron_slots.put(pipeline_id, slot)
        return True

    async def cron_slot(self, pipeline_id: str) -> datetime | None:
        return self._cron_slots.get(pipeline_id)


def _saved_stage(stored: StageRun, saved: StageRun | None) -> StageRun:
    """The stored stage with what `save` writes of it: not its spec, nor its log line count."""
    if saved is None:
        return stored
    return dataclasses.replace(saved, spec=stored.spec, log_lines=stored.log_lines)


class FakePipelineRunRepository:
    def __init__(self, runs: _Table[str, tuple[int, PipelineRun]]) -> None:
        self._runs = runs

    def _ordered(self) -> list[PipelineRun]:
        """Every run, oldest first (by queue position)."""
        return [run for _, run in sorted(self._runs.rows().values(), key=lambda row: row[0])]

    def _put(self, run: PipelineRun) -> None:
        seq, _ = self._runs.rows()[run.id]
        self._runs.put(run.id, (seq, run))

    async def add(self, run: PipelineRun) -> int:
        rows = self._runs.rows()
        if run.id in rows:
            raise Conflict(f"run {run.id} exists")
        numbers = [stored.number for _, stored in rows.values() if stored.pipeline_id == run.pipeline_id]
        run.number = max(numbers, default=0) + 1
        seq = max((seq for seq, _ in rows.values()), default=0) + 1
        self._runs.put(run.id, (seq, copy.deepcopy(run)))
        return run.number

    async def save(self, run: PipelineRun) -> None:
        found = self._runs.get(run.id)
        if found is None:
            return
        stored = found[1]
        saved = {stage.name: stage for stage in copy.deepcopy(run.stages)}
        stages = [_saved_stage(stage, saved.get(stage.name)) for stage in stored.stages]
        self._put(dataclasses.replace(copy.deepcopy(run), number=stored.number, stages=stages))

    async def get(self, run_id: str) -> PipelineRun | None:
        found = self._runs.get(run_id)
        return None if found is None else copy.deepcopy(found[1])

    async def query(self, query: RunQuery) -> list[PipelineRun]:
        matching = [
            run
            for run in reversed(self._ordered())
            if (query.pipeline_id is None or run.pipeline_id == query.pipeline_id)
            and (query.status is None or run.status is query.status)
            and (query.before_number is None or run.number < query.before_number)
        ]
        return copy.deepcopy(matching[: query.limit])

    async def latest(self) -> dict[str, PipelineRun]:
        return copy.deepcopy({run.pipeline_id: run for run in self._ordered()})

    async def pending(self) -> list[PipelineRun]:
        return copy.deepcopy([run for run in self._ordered() if run.status is RunStatus.PENDING])

    async def active(self) -> list[PipelineRun]:
        return copy.deepcopy([run for run in self._ordered() if run.status.active])

    async def used_slots(self) -> dict[str, int]:
        used: dict[str, int] = {}
        for run in self._ordered():
            if run.status.active and run.node is not None:
                used[run.node] = used.get(run.node, 0) + 1
        return used

    async def reserve(self, run_id: str, node: str, limit: int, at: datetime) -> bool:
        found = self._runs.get(run_id)
        if found is None or found[1].status is not RunStatus.PENDING:
            return False
        if (await self.used_slots()).get(node, 0) >= limit:
            return False
        self._put(
            dataclasses.replace(copy.deepcopy(found[1]), status=RunStatus.RUNNING, node=node, started_at=at)
        )
        return True

    async def cancel_pending(self, run_id: str, by: str, at: datetime) -> bool:
        found = self._runs.get(run_id)
        if found is None or found[1].status is not RunStatus.PENDING:
            return False
        run = copy.deepcopy(found[1])
        run.status, run.cancelled_by, run.finished_at = RunStatus.CANCELLED, by, at
        for stage in run.stages:
            stage.status = StageStatus.CANCELLED
        self._put(run)
        return True

    async def extend_lease(self, run_id: str, stage: str, until: datetime) -> None:
        found = self._runs.get(run_id)
        if found is None:
            return
        run = copy.deepcopy(found[1])
        for kept in run.stages:
            if kept.name == stage:
                kept.lease_expires_at = until
        self._put(run)

    async def expired(self, now: datetime) -> list[tuple[str, str]]:
        leases = [
            (stage.lease_expires_at, run.id, position, stage.name)
            for run in self._ordered()
            for position, stage in enumerate(run.stages)
            if stage.status is StageStatus.RUNNING
            and stage.lease_expires_at is not None
            and stage.lease_expires_at < now
        ]
        return [(run_id, name) for _, run_id, _, name in sorted(leases)]


class FakeStageLogRepository:
    """Appending raises the stage's line count in the runs table of the same transaction."""

    def __init__(
        self, logs: _Table[tuple[str, str, int], StageLogLine], runs: _Table[str, tuple[int, PipelineRun]]
    ) -> None:
        self._logs = logs
        self._runs = runs

    async def append(self, run_id: str, stage: str, lines: Sequence[StageLogLine]) -> None:
        if not lines:
            return
        rows = self._logs.rows()
        for line in lines:
            if (run_id, stage, line.number) in rows:
                raise Conflict(f"line {line.number} of {run_id}/{stage} is stored")
            self._logs.put((run_id, stage, line.number), line)
        found = self._runs.get(run_id)
        if found is None:
            return
        seq, run = found
        run = copy.deepcopy(run)
        for kept in run.stages:
            if kept.name == stage:
                kept.log_lines = max(line.number for line in lines)
        self._runs.put(run_id, (seq, run))

    async def read(self, run_id: str, stage: str, after: int, limit: int) -> list[StageLogLine]:
        lines = [
            line
            for (owner, name, number), line in self._logs.rows().items()
            if owner == run_id and name == stage and number > after
        ]
        return sorted(lines, key=lambda line: line.number)[:limit]


class FakeSecretRepository:
    def __init__(self, secrets: _Table[str, PipelineSecret]) -> None:
        self._secrets = secrets

    async def put(self, secret: PipelineSecret) -> bool:
        existing = self._secrets.get(secret.name)
        kept = secret if existing is None else dataclasses.replace(secret, created_at=existing.created_at)
        self._secrets.put(secret.name, kept)
        return existing is None

    async def get_many(self, names: Sequence[str]) -> dict[str, PipelineSecret]:
        rows = self._secrets.rows()
        return {name: rows[name] for name in names if name in rows}

    async def list_all(self) -> list[PipelineSecret]:
        return sorted(self._secrets.rows().values(), key=lambda secret: secret.name)

    async def delete(self, name: str) -> bool:
        return self._secrets.remove(name)


class FakePipelines:
    """Pipelines' repositories for one unit of work."""

    def __init__(self, store: Store) -> None:
        tables = _tables.setdefault(store, _Tables())
        self._pipelines = _Table(tables.pipelines)
        self._cron_slots = _Table(tables.cron_slots)
        self._runs = _Table(tables.runs)
        self._logs = _Table(tables.logs)
        self._secrets = _Table(tables.secrets)
        self.pipelines = FakePipelineRepository(self._pipelines, self._cron_slots)
        self.runs = FakePipelineRunRepository(self._runs)
        self.logs = FakeStageLogRepository(self._logs, self._runs)
        self.secrets = FakeSecretRepository(self._secrets)

    def commit(self) -> None:
        self._pipelines.commit()
        self._cron_slots.commit()
        self._runs.commit()
        self._logs.commit()
        self._secrets.commit()

    def discard(self) -> None:
        self._pipelines.discard()
        self._cron_slots.discard()
        self._runs.discard()
        self._logs.discard()
        self._secrets.discard()
