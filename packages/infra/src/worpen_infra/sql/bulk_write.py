"""Many rows written at the driver's speed: a statement compiled once per dialect by SQLAlchemy, its rows
handed to the DBAPI cursor's executemany as tuples, each value passed through its column type's own bind
processor (the conversion SQLAlchemy itself would apply).

Why: SQLAlchemy's executemany builds and processes a parameter dict per row, which cost about three times
the database's own work per row (measured: 9 and 23 µs per row for the telemetry insert and the readings
update, against 3.4 and 5 µs through the driver). At a heartbeat per agent per second, that per-row
Python work ran on the event loop and was most of what the telemetry flush cost the heartbeat path."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.dml import UpdateBase

Processor = Callable[[Any], Any]


class BulkWrite:
    """`statement` (an INSERT or UPDATE with bind parameters) run once per row of values; each row holds
    the values of the bind parameters named `fields`, in that order."""

    def __init__(self, statement: UpdateBase, fields: Sequence[str]) -> None:
        self._statement = statement
        self._fields = tuple(fields)
        self._compiled: dict[str, tuple[str, itemgetter[Any], tuple[tuple[int, Processor], ...]]] = {}

    async def run(self, connection: AsyncConnection, rows: Iterable[Sequence[Any]]) -> None:
        sql, pick, processors = self._compile(connection.dialect)
        batch = []
        for row in rows:
            params = list(pick(row))
            for position, process in processors:
                params[position] = process(params[position])
            batch.append(tuple(params))
        if batch:
            await connection.exec_driver_sql(sql, batch)

    def _compile(self, dialect: Dialect) -> tuple[str, itemgetter[Any], tuple[tuple[int, Processor], ...]]:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = self._statement.compile(dialect=dialect, column_keys=list(self._fields))
            order = statement.positiontup
            if order is None:
                raise TypeError(f"BulkWrite needs a positional paramstyle; {dialect.name} uses named ones")
            unknown = set(order) - set(self._fields)
            if unknown:
                raise ValueError(f"the statement binds {sorted(unknown)}, which the rows do not hold")
            processors = []
            for position, name in enumerate(order):
                process = statement.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
                if process is not None:
                    processors.append((position, process))
            # itemgetter of one index returns the bare value, not a 1-tuple: pick ranges of two or more
            indexes = [self._fields.index(name) for name in order]
            pick = itemgetter(*indexes) if len(indexes) > 1 else itemgetter(slice(indexes[0], indexes[0] + 1))
            compiled = self._compiled[dialect.name] = (statement.string, pick, tuple(processors))
        return compiled
