"""What differs between SQLite and PostgreSQL in the statements the repositories build, chosen at run time
from the connection's dialect: the same code runs on both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Dialect, Table
from sqlalchemy.dialects import postgresql, sqlite

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
