"""Requests between replicas for the one driving a pipeline run (core PipelineRequests) on SQLAlchemy
Core. Taking and withdrawing are each one conditional statement on the open row, so exactly one of them
wins: a request is carried out once, or not at all and its asker says so."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import cast

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worpen_core.pipelines.ports import PipelineRequest, RequestAction, RequestOutcome
from worpen_core.shared.errors import Unavailable
from worpen_infra.sql.tables import pipeline_requests
from worpen_infra.sql.unit_of_work import translate

_t = pipeline_requests.c


class SqlAlchemyPipelineRequests:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, request: PipelineRequest) -> None:
        async with _transaction(self._engine) as connection:
            await connection.execute(
                insert(pipeline_requests).values(
                    id=request.id,
                    run_id=request.run_id,
                    action=request.action,
                    stage=request.stage,
                    by=request.by,
                    at=request.at,
                    taken=False,
                    answered=False,
                )
            )

    async def open_for(self, run_ids: Collection[str]) -> list[PipelineRequest]:
        ids = list(run_ids)
        if not ids:
            return []
        query = (
            select(_t.id, _t.run_id, _t.action, _t.stage, _t.by, _t.at)
            .where(_t.taken.is_(False), _t.run_id.in_(ids))
            .order_by(_t.at, _t.id)
        )
        async with _transaction(self._engine) as connection:
            rows = (await connection.execute(query)).all()
        return [
            PipelineRequest(row.id, row.run_id, cast(RequestAction, row.action), row.stage, row.by, row.at)
            for row in rows
        ]

    async def take(self, request_id: str) -> bool:
        async with _transaction(self._engine) as connection:
            result = await connection.execute(
                update(pipeline_requests).where(_t.id == request_id, _t.taken.is_(False)).values(taken=True)
            )
        return result.rowcount == 1

    async def answer(self, request_id: str, outcome: RequestOutcome) -> None:
        async with _transaction(self._engine) as connection:
            await connection.execute(
                update(pipeline_requests)
                .where(_t.id == request_id)
                .values(answered=True, conflict=outcome.conflict)
            )

    async def outcome(self, request_id: str) -> RequestOutcome | None:
        query = select(_t.conflict).where(_t.id == request_id, _t.answered.is_(True))
        async with _transaction(self._engine) as connection:
            row = (await connection.execute(query)).first()
        return RequestOutcome(row.conflict) if row is not None else None

    async def withdraw(self, request_id: str) -> bool:
        async with _transaction(self._engine) as connection:
            result = await connection.execute(
                delete(pipeline_requests).where(_t.id == request_id, _t.taken.is_(False))
            )
        return result.rowcount == 1

    async def remove(self, request_id: str) -> None:
        async with _transaction(self._engine) as connection:
            await connection.execute(delete(pipeline_requests).where(_t.id == request_id))


@asynccontextmanager
async def _transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """`engine.begin()`, with database errors translated to core errors."""
    try:
        async with engine.begin() as connection:
            yield connection
    except SQLAlchemyError as exc:
        raise translate(exc) from exc
    except OSError as exc:  # a connection the driver lost before SQLAlchemy could wrap the error
        raise Unavailable("database", str(exc) or type(exc).__name__) from exc
