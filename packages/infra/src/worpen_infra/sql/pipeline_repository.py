"""Pipelines' repositories on SQLAlchemy Core: definitions, runs with their stages, stage logs and sealed
secrets. A stage's definition is kept as JSON (`spec`), so a run keeps the stages it started with.

What must not race is one conditional statement each: a run's number and queue position are computed inside
its INSERT, a node's slot is reserved by an UPDATE that counts the node's active runs in its WHERE, and a
cron slot is claimed by an UPDATE that only moves it forward."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from worpen_core.pipelines.model import (
    Pipeline,
    PipelineRun,
    PipelineSecret,
    RunQuery,
    RunStatus,
    StageLogLine,
    StageRun,
    StageSpec,
    StageStatus,
    TriggerKind,
)
from worpen_core.shared.errors import Conflict
from worpen_infra.sql.dialects import upsert
from worpen_infra.sql.tables import (
    pipeline_definitions,
    pipeline_runs,
    pipeline_secrets,
    pipeline_stage_logs,
    pipeline_stages,
)

_ACTIVE = (RunStatus.RUNNING.value, RunStatus.BLOCKED.value)
_RUN_FIELDS = tuple(field.name for field in dataclasses.fields(PipelineRun) if field.name != "stages")
_SAVED_RUN_FIELDS = tuple(name for name in _RUN_FIELDS if name not in ("id", "number"))
"""What `save` writes: a run's id, number and queue position are the store's once it is added."""
_SAVED_STAGE_FIELDS = (
    "status",
    "exit_code",
    "container_id",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "error",
    "decided_by",
)
"""What `save` writes of a stage: neither its spec (fixed when the run starts) nor its log line count."""


def _spec_to_json(spec: StageSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def _spec_from_json(value: dict[str, Any]) -> StageSpec:
    return StageSpec(
        **{
            **value,
            "commands": tuple(value["commands"]),
            "env": dict(value["env"]),
            "secrets": tuple(value["secrets"]),
            "depends_on": tuple(value["depends_on"]),
            "node_labels": dict(value["node_labels"]),
        }
    )


def _pipeline_to_row(pipeline: Pipeline) -> dict[str, Any]:
    return {
        **{field.name: getattr(pipeline, field.name) for field in dataclasses.fields(pipeline)},
        "stages": [_spec_to_json(spec) for spec in pipeline.stages],
    }


def _pipeline_from_row(row: Row[Any]) -> Pipeline:
    values = dict(row._mapping)
    del values["cron_slot"]
    return Pipeline(**{**values, "stages": tuple(_spec_from_json(spec) for spec in row.stages)})


def _run_to_row(run: PipelineRun) -> dict[str, Any]:
    return {
        **{name: getattr(run, name) for name in _RUN_FIELDS},
        "status": run.status.value,
        "trigger": run.trigger.value,
    }


def _run_from_row(row: Row[Any], stages: list[StageRun]) -> PipelineRun:
    values = {name: row._mapping[name] for name in _RUN_FIELDS}
    return PipelineRun(
        **{**values, "status": RunStatus(row.status), "trigger": TriggerKind(row.trigger)}, stages=stages
    )


def _stage_from_row(row: Row[Any]) -> StageRun:
    return StageRun(
        spec=_spec_from_json(row.spec),
        status=StageStatus(row.status),
        exit_code=row.exit_code,
        container_id=row.container_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        lease_expires_at=row.lease_expires_at,
        error=row.error,
        decided_by=row.decided_by,
        log_lines=row.log_lines,
    )


def _stage_to_row(run_id: str, position: int, stage: StageRun) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "name": stage.name,
        "position": position,
        "spec": _spec_to_json(stage.spec),
        **{name: getattr(stage, name) for name in _SAVED_STAGE_FIELDS},
        "status": stage.status.value,
        "log_lines": stage.log_lines,
    }


class SqlAlchemyPipelineRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, pipeline: Pipeline) -> None:
        try:
            await self._connection.execute(insert(pipeline_definitions).values(_pipeline_to_row(pipeline)))
        except IntegrityError as exc:
            raise Conflict(f"a pipeline with the id {pipeline.id!r} exists") from exc

    async def update(self, pipeline: Pipeline) -> None:
        await self._connection.execute(
            update(pipeline_definitions)
            .where(pipeline_definitions.c.id == pipeline.id)
            .values(_pipeline_to_row(pipeline))
        )

    async def get(self, pipeline_id: str) -> Pipeline | None:
        query = select(pipeline_definitions).where(pipeline_definitions.c.id == pipeline_id)
        row = (await self._connection.execute(query)).first()
        return None if row is None else _pipeline_from_row(row)

    async def list_all(self) -> list[Pipeline]:
        query = select(pipeline_definitions).order_by(pipeline_definitions.c.id)
        return [_pipeline_from_row(row) for row in await self._connection.execute(query)]

    async def delete(self, pipeline_id: str) -> bool:
        result = await self._connection.execute(
            delete(pipeline_definitions).where(pipeline_definitions.c.id == pipeline_id)
        )
        return bool(result.rowcount)

    async def claim_cron_slot(self, pipeline_id: str, slot: datetime) -> bool:
        last = pipeline_definitions.c.cron_slot
        result = await self._connection.execute(
            update(pipeline_definitions)
            .where(pipeline_definitions.c.id == pipeline_id, or_(last.is_(None), last < slot))
            .values(cron_slot=slot)
        )
        return bool(result.rowcount)

    async def cron_slot(self, pipeline_id: str) -> datetime | None:
        query = select(pipeline_definitions.c.cron_slot).where(pipeline_definitions.c.id == pipeline_id)
        slot: datetime | None = (await self._connection.execute(query)).scalar_one_or_none()
        return slot


class SqlAlchemyPipelineRunRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def _load(self, query: Select[Any]) -> list[PipelineRun]:
        """The runs `query` selects, in its order, each with its stages (read in one more query)."""
        rows = list(await self._connection.execute(query))
        if not rows:
            return []
        stages: dict[str, list[StageRun]] = {row.id: [] for row in rows}
        stage_rows = await self._connection.execute(
            select(pipeline_stages)
            .where(pipeline_stages.c.run_id.in_(stages))
            .order_by(pipeline_stages.c.run_id, pipeline_stages.c.position)
        )
        for stage in stage_rows:
            stages[stage.run_id].append(_stage_from_row(stage))
        return [_run_from_row(row, stages[row.id]) for row in rows]

    async def add(self, run: PipelineRun) -> int:
        """Numbers the run inside its INSERT: a concurrent add that computed the same number or queue
        position fails on the unique constraints (Conflict) instead of sharing it."""
        after = select(func.coalesce(func.max(pipeline_runs.c.number), 0) + 1).where(
            pipeline_runs.c.pipeline_id == run.pipeline_id
        )
        queued = select(func.coalesce(func.max(pipeline_runs.c.seq), 0) + 1)
        values = {**_run_to_row(run), "number": after.scalar_subquery(), "seq": queued.scalar_subquery()}
        await self._connection.execute(insert(pipeline_runs).values(values))
        number_of = select(pipeline_runs.c.number).where(pipeline_runs.c.id == run.id)
        number: int = (await self._connection.execute(number_of)).scalar_one()
        if run.stages:
            await self._connection.execute(
                insert(pipeline_stages),
                [_stage_to_row(run.id, position, stage) for position, stage in enumerate(run.stages)],
            )
        run.number = number
        return number

    async def save(self, run: PipelineRun) -> None:
        await self._connection.execute(
            update(pipeline_runs)
            .where(pipeline_runs.c.id == run.id)
            .values({name: value for name, value in _run_to_row(run).items() if name in _SAVED_RUN_FIELDS})
        )
        if run.stages:
            await self._connection.execute(
                update(pipeline_stages).where(
                    pipeline_stages.c.run_id == bindparam("stage_run_id"),
                    pipeline_stages.c.name == bindparam("stage_name"),
                ),
                [
                    {
                        "stage_run_id": run.id,
                        "stage_name": stage.name,
                        **{name: getattr(stage, name) for name in _SAVED_STAGE_FIELDS},
                        "status": stage.status.value,
                    }
                    for stage in run.stages
                ],
            )

    async def get(self, run_id: str) -> PipelineRun | None:
        runs = await self._load(select(pipeline_runs).where(pipeline_runs.c.id == run_id))
        return runs[0] if runs else None

    async def query(self, query: RunQuery) -> list[PipelineRun]:
        statement = select(pipeline_runs).order_by(pipeline_runs.c.seq.desc()).limit(query.limit)
        if query.pipeline_id is not None:
            statement = statement.where(pipeline_runs.c.pipeline_id == query.pipeline_id)
        if query.status is not None:
            statement = statement.where(pipeline_runs.c.status == query.status.value)
        if query.before_number is not None:
            statement = statement.where(pipeline_runs.c.number < query.before_number)
        return await self._load(statement)

    async def latest(self) -> dict[str, PipelineRun]:
        newest = select(func.max(pipeline_runs.c.seq)).group_by(pipeline_runs.c.pipeline_id)
        runs = await self._load(
            select(pipeline_runs).where(pipeline_runs.c.seq.in_(newest)).order_by(pipeline_runs.c.pipeline_id)
        )
        return {run.pipeline_id: run for run in runs}

    async def pending(self) -> list[PipelineRun]:
        return await self._load(
            select(pipeline_runs)
            .where(pipeline_runs.c.status == RunStatus.PENDING.value)
            .order_by(pipeline_runs.c.seq)
        )

    async def active(self) -> list[PipelineRun]:
        return await self._load(
            select(pipeline_runs).where(pipeline_runs.c.status.in_(_ACTIVE)).order_by(pipeline_runs.c.seq)
        )

    async def used_slots(self) -> dict[str, int]:
        query = (
            select(pipeline_runs.c.node, func.count())
            .where(pipeline_runs.c.status.in_(_ACTIVE), pipeline_runs.c.node.is_not(None))
            .group_by(pipeline_runs.c.node)
        )
        return {node: count for node, count in await self._connection.execute(query)}

    async def reserve(self, run_id: str, node: str, limit: int, at: datetime) -> bool:
        held = pipeline_runs.alias("held")
        used = (
            select(func.count())
            .select_from(held)
            .where(held.c.node == node, held.c.status.in_(_ACTIVE))
            .scalar_subquery()
        )
        result = await self._connection.execute(
            update(pipeline_runs)
            .where(
                pipeline_runs.c.id == run_id,
                pipeline_runs.c.status == RunStatus.PENDING.value,
                used < limit,
            )
            .values(status=RunStatus.RUNNING.value, node=node, started_at=at)
        )
        return bool(result.rowcount)

    async def cancel_pending(self, run_id: str, by: str, at: datetime) -> bool:
        result = await self._connection.execute(
            update(pipeline_runs)
            .where(pipeline_runs.c.id == run_id, pipeline_runs.c.status == RunStatus.PENDING.value)
            .values(status=RunStatus.CANCELLED.value, cancelled_by=by, finished_at=at)
        )
        if not result.rowcount:
            return False
        await self._connection.execute(
            update(pipeline_stages)
            .where(pipeline_stages.c.run_id == run_id)
            .values(status=StageStatus.CANCELLED.value)
        )
        return True

    async def extend_lease(self, run_id: str, stage: str, until: datetime) -> None:
        await self._connection.execute(
            update(pipeline_stages)
            .where(pipeline_stages.c.run_id == run_id, pipeline_stages.c.name == stage)
            .values(lease_expires_at=until)
        )

    async def expired(self, now: datetime) -> list[tuple[str, str]]:
        lease = pipeline_stages.c.lease_expires_at
        query = (
            select(pipeline_stages.c.run_id, pipeline_stages.c.name)
            .where(pipeline_stages.c.status == StageStatus.RUNNING.value, lease < now)
            .order_by(lease, pipeline_stages.c.run_id, pipeline_stages.c.position)
        )
        return [(run_id, name) for run_id, name in await self._connection.execute(query)]


class SqlAlchemyStageLogRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def append(self, run_id: str, stage: str, lines: Sequence[StageLogLine]) -> None:
        if not lines:
            return
        await self._connection.execute(
            insert(pipeline_stage_logs),
            [{"run_id": run_id, "stage": stage, **dataclasses.asdict(line)} for line in lines],
        )
        await self._connection.execute(
            update(pipeline_stages)
            .where(pipeline_stages.c.run_id == run_id, pipeline_stages.c.name == stage)
            .values(log_lines=max(line.number for line in lines))
        )

    async def read(self, run_id: str, stage: str, after: int, limit: int) -> list[StageLogLine]:
        logs = pipeline_stage_logs
        query = (
            select(logs.c.number, logs.c.stream, logs.c.text, logs.c.at)
            .where(logs.c.run_id == run_id, logs.c.stage == stage, logs.c.number > after)
            .order_by(logs.c.number)
            .limit(limit)
        )
        return [StageLogLine(*row) for row in await self._connection.execute(query)]


class SqlAlchemySecretRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def put(self, secret: PipelineSecret) -> bool:
        """An upsert that keeps the first `created_at`, so a concurrent put of the same name replaces the
        value rather than failing."""
        existing = select(pipeline_secrets.c.name).where(pipeline_secrets.c.name == secret.name)
        new = (await self._connection.execute(existing)).first() is None
        statement = upsert(self._connection.dialect, pipeline_secrets).values(dataclasses.asdict(secret))
        await self._connection.execute(
            statement.on_conflict_do_update(
                index_elements=["name"],
                set_={name: statement.excluded[name] for name in ("sealed", "updated_at", "updated_by")},
            )
        )
        return new

    async def get_many(self, names: Sequence[str]) -> dict[str, PipelineSecret]:
        if not names:
            return {}
        query = select(pipeline_secrets).where(pipeline_secrets.c.name.in_(names))
        return {row.name: PipelineSecret(**row._mapping) for row in await self._connection.execute(query)}

    async def list_all(self) -> list[PipelineSecret]:
        query = select(pipeline_secrets).order_by(pipeline_secrets.c.name)
        return [PipelineSecret(**row._mapping) for row in await self._connection.execute(query)]

    async def delete(self, name: str) -> bool:
        result = await self._connection.execute(
            delete(pipeline_secrets).where(pipeline_secrets.c.name == name)
        )
        return bool(result.rowcount)
