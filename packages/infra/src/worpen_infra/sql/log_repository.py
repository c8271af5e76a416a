"""LogRepository on SQLAlchemy Core. Text queries use the FTS5 index `logs_fts` on SQLite (migration 0004)
and a GIN index on the messages' words on PostgreSQL (migration 0007), each given the query in its own
syntax; a query neither can read is the caller's mistake (InvalidInput naming `q`)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import (
    Row,
    Select,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import column
from sqlalchemy.sql.expression import ColumnClause

from worpen_core.logs.model import Level, LogEntry, LogFilter, LogLine, LogQuery
from worpen_core.logs.ports import Pruned
from worpen_core.shared.errors import InvalidInput
from worpen_infra.sql.dialects import JOURNAL, serialize_appends
from worpen_infra.sql.tables import LOGS_DOCUMENT, LOGS_FULL_TEXT, logs

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


_TS_TOKEN = re.compile(r'"[^"]*"?|[()]|[^\s"()]+')
_OPERATORS = ("AND", "OR", "NOT")
_DEPTH = 32
"""How deeply parentheses may nest in a query (deeper is refused rather than recursed into)."""
_WORD = re.compile(r"[^\W_]+")
"""A word of a message as LOGS_DOCUMENT reads it: a run of letters and digits."""


class _TsQuery:
    """The query syntax FTS5 reads (README: words, all of which must appear; "phrases"; prefix*; AND, OR,
    NOT and parentheses, NOT binding tightest and OR loosest; punctuated words read as phrases) written as
    a PostgreSQL tsquery of LOGS_DOCUMENT's words. Parsed here rather than by the database: a query it
    cannot read is the caller's mistake, found before the database sees it (an error there would end the
    transaction). A term without any word (`"-"`) drops out of what holds it, as in FTS5."""

    def __init__(self, text: str) -> None:
        self._pieces = _TS_TOKEN.findall(text)
        self._next = 0
        self._depth = 0

    def parse(self) -> str | None:
        """The tsquery; None when the query holds no word at all (it matches nothing)."""
        found = self._any()
        if self._next < len(self._pieces):
            self._refuse(f"unexpected {self._pieces[self._next]!r}")
        return found

    def _peek(self) -> str | None:
        return self._pieces[self._next] if self._next < len(self._pieces) else None

    def _take(self) -> str | None:
        piece = self._peek()
        self._next += 1
        return piece

    def _refuse(self, reason: str) -> NoReturn:
        raise InvalidInput(f"not a full-text query this server reads: {reason}", "q")

    def _any(self) -> str | None:
        terms = [self._all()]
        while self._peek() == "OR":
            self._take()
            terms.append(self._all())
        return _joined(terms, " | ")

    def _all(self) -> str | None:
        terms = [self._but()]
        while (piece := self._peek()) is not None and piece not in ("OR", "NOT", ")"):
            if piece == "AND":
                self._take()
            terms.append(self._but())
        return _joined(terms, " & ")

    def _but(self) -> str | None:
        kept = self._term()
        while self._peek() == "NOT":
            self._take()
            excluded = self._term()
            if kept is not None and excluded is not None:
                kept = f"({kept} & !{excluded})"
        return kept

    def _term(self) -> str | None:
        piece = self._take()
        if piece is None:
            self._refuse("it ends where a word was expected")
        if piece == "(":
            self._depth += 1
            if self._depth > _DEPTH:
                self._refuse(f"parentheses nest deeper than {_DEPTH}")
            inner = self._any()
            if self._take() != ")":
                self._refuse("a parenthesis is not closed")
            self._depth -= 1
            return inner
        if piece in (")", *_OPERATORS):
            self._refuse(f"{piece!r} where a word was expected")
        prefix = False
        if piece.startswith('"'):
            if len(piece) < 2 or not piece.endswith('"'):
                self._refuse("unterminated string")
        elif piece.startswith("*"):
            self._refuse(f"{piece!r}: a prefix needs a word before its '*'")
        elif piece.endswith("*"):
            prefix = True
        words = [f"'{word}'" for word in _WORD.findall(piece)]
        if not words:
            return None
        if prefix:
            words[-1] += ":*"
        return words[0] if len(words) == 1 else f"({' <-> '.join(words)})"


def _joined(terms: list[str | None], operator: str) -> str | None:
    kept = [term for term in terms if term is not None]
    if len(kept) < 2:
        return kept[0] if kept else None
    return f"({operator.join(kept)})"


def ts_query(text: str) -> str | None:
    """`text`, in the syntax FTS5 reads, as a PostgreSQL tsquery (see _TsQuery); None if it has no word."""
    return _TsQuery(text).parse()


_document: ColumnClause[Any] = literal_column(LOGS_DOCUMENT)
_ts_matches = _document.op("@@")(func.to_tsquery(literal_column("'simple'::regconfig"), bindparam("tsquery")))
"""The messages matching :tsquery, spelled as the index is (literals, not parameters, so that a generic
plan can use the index too)."""


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
        await serialize_appends(self._connection, JOURNAL)
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
        if self._connection.dialect.name == "postgresql":
            return await self._matching_postgresql(statement, query.text)
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

    async def _matching_postgresql(self, statement: Select[Any], text: str) -> list[LogEntry]:
        tsquery = ts_query(text)
        if tsquery is None:
            return []
        rows = await self._connection.execute(statement.where(_ts_matches), {"tsquery": tsquery})
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
