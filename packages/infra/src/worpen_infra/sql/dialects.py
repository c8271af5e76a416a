"""What differs between SQLite and PostgreSQL in the statements the repositories build, chosen at run time
from the connection's dialect: the same code runs on both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import BigInteger, Dialect, Table, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")

Upsert = sqlite.Insert | postgresql.Insert
"""An INSERT that takes ON CONFLICT: both dialects spell it alike, but each compiles only its own."""


def upsert(dialect: Dialect, table: Table) -> Upsert:
    """The dialect's INSERT for `table`, which takes `on_conflict_do_update` / `_do_nothing`."""
    return (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)


class PerDialect(Generic[T]):
    """A statement built once per dialect, on first use: `build` receives the dialect."""

    def __init__(self, build: Callable[[Dialect], T]) -> None:
        self._build = build
        self._built: dict[str, T] = {}

    def __call__(self, dialect: Dialect) -> T:
        built = self._built.get(dialect.name)
        if built is None:
            built = self._built[dialect.name] = self._build(dialect)
        return built


JOURNAL = 0x574F_5250_0001
"""The append lock of the events and the log (one lock: a transaction often appends to both)."""
SAMPLES = 0x574F_5250_0002
"""The append lock of agent_samples."""

_lock = select(func.pg_advisory_xact_lock(bindparam("family", type_=BigInteger)))


async def serialize_appends(connection: AsyncConnection, family: int) -> None:
    """On PostgreSQL, wait for the transaction-long lock of the table `family` before appending to it, so
    its ids commit in the order they were drawn.

    Why: readers follow these tables with a watermark (the last id they took: journal tails on every
    replica, the rollup of samples). A sequence hands ids out at insert, not at commit, so without the lock
    a transaction that drew 10 could commit after one that drew 11, and a reader that took 11 in between
    would never see 10. Holding the lock from before the insert until the commit makes appends commit one
    after another, in id order. SQLite needs nothing: it has a single writer, whose ids are in order."""
    if connection.dialect.name == "postgresql":
        await connection.execute(_lock, {"family": family})
