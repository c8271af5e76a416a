"""LogRepository on SQLAlchemy Core. On SQLite, text queries use the FTS5 index `logs_fts` (migration 0004):
its syntax stays here, and a query it cannot read is the caller's mistake (InvalidInput naming `q`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, delete, func, insert, literal_column, or_, select, table
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import column

from worpen_core.logs.model import Level, LogEntry, LogFilter, LogLine, LogQuery
from worpen_core.logs.ports import Pruned
from worpen_core.shared.errors import InvalidInput
from worpen_infra.sql.tables import LOGS_FULL_TEXT, logs

full_text = table(LOGS_FULL_TEXT, column("rowid"))
_ENTRY = (logs.c.id, logs.c.timestamp, logs.c.level, logs.c.source, logs.c.message, logs.c.fields)
"""An entry's columns: all but `size`, which only retention reads."""

_TOKEN = re.compile(r'"[^"]*"?|[^\s"]+')
_BARE = re.compile(r"\^?\w+\*?|AND|OR|NOT|NEAR|\*")
_QUERY_ERRORS = ("fts5:", "unterminated string", "no such column", "unknown special query")
"""How SQLite begins the message of a full-text query it cannot read."""


def fts_query(text: str) -> str:
    """`text` in FTS5's syntax, with words that hold punctuation (`bee-001`, `/var/log`, `it's`) quoted as
    phrases: bare, FTS5 would read their punctuation as its own syntax. Quoted phrases, parentheses,
    prefixes (`conn*`) and the operators AND, OR, NOT and NEAR are left as they are."""
    tokens: list[str] = []
    for token in _TOKEN.findall(text):
        if token.startswith('"'):
            tokens.append(token)
            continue
        word = token.strip("()")
        opening = token[: len(token) - len(token.lstrip("("))]
        closing = token[len(token.rstrip(")")) :]
        if word and not _BARE.fullmatch(word):
            word = f'"{word}"'
        tokens.append(f"{opening}{word}{closing}")
    return " ".join(tokens)


def _row(line: LogLine) -> dict[str, Any]:
    return {**dataclasses.asdict(line), "level": line.level.value, "size": line.size}


def _from_row(row: Row[Any]) -> LogEntry:
    values = row._mapping
    return LogEntry(
        values["id"],
        values["timestamp"],
        Level(values["level"]),
        values["source"],
        values["message"],
        values["fields"],
    )


def _kept(statement: Select[Any], kept: LogFilter) -> Select[Any]:
    if kept.level is not None:
        statement = statement.where(logs.c.level.in_(sorted(kept.level.and_above())))
    if kept.source is not None:
        statement = statement.where(
            or_(logs.c.source == kept.source, logs.c.source.startswith(f"{kept.source}/", autoescape=True))
        )
    return statement


class SqlAlchemyLogRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def append(self, lines: Sequence[LogLine]) -> list[int]:
        if not lines:
            return []
        statement = insert(logs).returning(logs.c.id, sort_by_parameter_order=True)
        result = await self._connection.execute(statement, [_row(line) for line in lines])
        return list(result.scalars())

    async def query(self, query: LogQuery) -> list[LogEntry]:
        statement = _kept(select(*_ENTRY), query.filter).order_by(logs.c.id.desc()).limit(query.limit)
        if query.before is not None:
            statement = statement.where(logs.c.id < query.before)
        if query.since is not None:
            statement = statement.where(logs.c.timestamp >= query.since)
        if query.until is not None:
            statement = statement.where(logs.c.timestamp < query.until)
        if query.text is None:
            return [_from_row(row) for row in await self._connection.execute(statement)]
        matching = select(full_text.c.rowid).where(
            literal_column(LOGS_FULL_TEXT).match(fts_query(query.text))
        )
        try:
            rows = await self._connection.execute(statement.where(logs.c.id.in_(matching.scalar_subquery())))
        except OperationalError as exc:
            reason = str(exc.orig)
            if reason.startswith(_QUERY_ERRORS):
                raise InvalidInput(f"not a full-text query this server reads: {reason}", "q") from exc
            raise
        return [_from_row(row) for row in rows]

    async def after(self, after: int, limit: int, kept: LogFilter) -> list[LogEntry]:
        statement = _kept(select(*_ENTRY), kept).where(logs.c.id > after).order_by(logs.c.id).limit(limit)
        return [_from_row(row) for row in await self._connection.execute(statement)]

    async def size(self) -> int:
        return int(
            (await self._connection.execute(select(func.coalesce(func.sum(logs.c.size), 0)))).scalar_one()
        )

    async def prune(self, before: datetime, excess: int, limit: int) -> Pruned:
        """One statement, so that the transaction's first access is a write: on SQLite (WAL), a transaction
        that read first cannot write once another has committed since (SQLITE_BUSY_SNAPSHOT)."""
        head = select(logs.c.id, logs.c.timestamp, logs.c.size).order_by(logs.c.id).limit(limit).subquery()
        walked = select(
            head.c.id,
            head.c.timestamp,
            (func.sum(head.c.size).over(order_by=head.c.id) - head.c.size).label("freed_before"),
        ).subquery()
        first_kept = (
            select(func.min(walked.c.id))
            .where(walked.c.timestamp >= before, walked.c.freed_before >= excess)
            .scalar_subquery()
        )
        last_walked = select(func.max(head.c.id)).scalar_subquery()
        doomed = delete(logs).where(logs.c.id < func.coalesce(first_kept, last_walked + 1))
        sizes = (await self._connection.execute(doomed.returning(logs.c.size))).scalars().all()
        return Pruned(len(sizes), sum(sizes))
