"""Copy an installation's data from one database to another (SQLite to PostgreSQL, mostly), table by table,
then check that it arrived: how a user outgrows the embedded default without losing history.

The source is read in one read transaction, a consistent snapshot even while a server still writes to it.
Rows are inserted with ON CONFLICT DO NOTHING on their primary key, so a second run copies only what is
new and changes nothing already there. Sealed secrets are copied as the bytes they are: the target's
servers need the key that sealed them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import (
    URL,
    Column,
    Connection,
    Dialect,
    Insert,
    Table,
    TypeDecorator,
    func,
    make_url,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, IntegrityError, InvalidRequestError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from worpen_core.shared.errors import Conflict, InvalidInput, Unavailable, WorpenError
from worpen_infra.sql.database import create_engine, upgrade_database
from worpen_infra.sql.tables import described, metadata

BATCH_ROWS = 2000
"""Rows read and inserted at a time: large enough to be quick, small enough to hold in memory."""
SAMPLE_ROWS = 20
"""Rows compared at each end of every table (by primary key), besides the counts."""


@dataclass(frozen=True, slots=True)
class TableCopy:
    """What happened to one table."""

    name: str
    source_rows: int
    """Rows in the source's snapshot."""
    copied: int
    """Rows inserted on the target by this run."""
    target_rows: int
    """Rows on the target once copied."""
    problems: tuple[str, ...]
    """What differs from the source: fewer rows, sampled rows missing or unequal; empty when it arrived."""

    @property
    def already_there(self) -> int:
        """Source rows the target had already (an earlier run copied them)."""
        return self.source_rows - self.copied


@dataclass(frozen=True, slots=True)
class CopyReport:
    tables: tuple[TableCopy, ...]

    @property
    def verified(self) -> bool:
        """Every table has at least the source's rows, and its sampled rows are there as in the source."""
        return not any(table.problems for table in self.tables)


LIVE_STATE = frozenset({"leases", "agent_streams", "auth_failures", "session_slots", "pipeline_requests"})
"""Tables of the source's running replicas, not of the installation: who leads them, which agent streams
they hold, the failed authentications they throttle, the terminal sessions they have open and the
pipeline requests they are answering. The
target's replicas write their own as they start, as agents connect and as clients come; copied, these rows
would name replicas that do not serve the target."""


def copied_table_names() -> list[str]:
    """The tables a copy moves, in the order it moves them."""
    return [table.name for table in _copied_tables()]


def _copied_tables() -> list[Table]:
    """Every table the schema describes but the live state: not Alembic's own, not SQLite's full-text
    index (the target builds its own as rows arrive)."""
    return [
        table for table in metadata.sorted_tables if described(table.name) and table.name not in LIVE_STATE
    ]


async def copy_database(
    source_url: str,
    target_url: str,
    *,
    batch_rows: int = BATCH_ROWS,
    sample_rows: int = SAMPLE_ROWS,
    on_table: Callable[[TableCopy], None] | None = None,
) -> CopyReport:
    """Copy every table of `source_url` to `target_url` (migrated to the newest schema first) and verify
    each; `on_table` hears of each table as it is done. The source must be at the newest migration."""
    source_address, target_address = _addresses(source_url, target_url)
    source = _engine("source", source_address)
    target = _engine("target", target_address)
    try:
        async with _connected("source", source_address, source) as reader:
            await _snapshot(reader, source_address)
            await _migrate("target", target_address, target)
            copies: list[TableCopy] = []
            for table in _copied_tables():
                copy = await _copy_table(reader, target, target_address, table, batch_rows, sample_rows)
                copies.append(copy)
                if on_table is not None:
                    on_table(copy)
            return CopyReport(tuple(copies))
    finally:
        await source.dispose()
        await target.dispose()


def _addresses(source_url: str, target_url: str) -> tuple[URL, URL]:
    source = _parse("source", source_url)
    target = _parse("target", target_url)
    if _same_database(source, target):
        raise InvalidInput(
            f"the source and the target are the same database ({_shown(source)}): copy to another database"
        )
    if _is_file(source) and not os.path.exists(str(source.database)):
        raise InvalidInput(f"the source database {_shown(source)} does not exist (no such file)")
    return source, target


def _parse(role: str, url: str) -> URL:
    """The URL, which an error does not repeat: it may hold a password."""
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise InvalidInput(
            f"the {role} is not a database URL (sqlite+aiosqlite:///path/worpen.db or "
            "postgresql+asyncpg://user:password@host:5432/database)"
        ) from exc


def _shown(address: URL) -> str:
    return address.render_as_string(hide_password=True)


def _is_file(address: URL) -> bool:
    database = address.database or ""
    return (
        address.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and not (database.startswith("file:"))
    )


def _same_database(source: URL, target: URL) -> bool:
    if source.get_backend_name() != target.get_backend_name():
        return False
    if _is_file(source) and _is_file(target):
        return os.path.realpath(str(source.database)) == os.path.realpath(str(target.database))
    return (_host(source), source.port, source.database) == (_host(target), target.port, target.database)


def _host(address: URL) -> str:
    host = (address.host or "localhost").lower()
    return "127.0.0.1" if host in ("localhost", "::1") else host


def _engine(role: str, address: URL) -> AsyncEngine:
    try:
        return create_engine(address.render_as_string(hide_password=False))
    except (ArgumentError, InvalidRequestError) as exc:
        raise InvalidInput(
            f"the {role} {_shown(address)} is not a database Worpen can use: {exc} (use "
            "sqlite+aiosqlite:///path/worpen.db or postgresql+asyncpg://user:password@host:5432/database)"
        ) from exc


def _unavailable(role: str, address: URL, exc: BaseException) -> Unavailable:
    reason = exc.reason if isinstance(exc, Unavailable) else str(getattr(exc, "orig", None) or exc)
    return Unavailable(f"the {role} database {_shown(address)}", reason or type(exc).__name__)


@asynccontextmanager
async def _connected(role: str, address: URL, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection to `engine`; a failure to reach it names the database by its role."""
    try:
        connection = await engine.connect()
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise _unavailable(role, address, exc) from exc
    try:
        yield connection
    finally:
        await connection.close()


async def _snapshot(connection: AsyncConnection, address: URL) -> None:
    """Make every read on `connection` see the database as it is now, whatever is written meanwhile.

    SQLite's driver begins a transaction only before a write, so each SELECT would see its own moment: an
    explicit BEGIN makes the first read pin the snapshot (WAL mode lets writers go on). PostgreSQL's
    REPEATABLE READ takes it at the first statement too (read only: the copy never writes to its source).
    That first read is the check that the source's
    schema is the newest."""
    try:
        if connection.dialect.name == "sqlite":
            await connection.exec_driver_sql("BEGIN")
        else:
            await connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        await connection.run_sync(_check_at_head, _shown(address))
    except SQLAlchemyError as exc:
        raise _unavailable("source", address, exc) from exc


def _check_at_head(connection: Connection, shown: str) -> None:
    config = Config()
    config.set_main_option("script_location", "worpen_infra.sql:migrations")
    heads = set(ScriptDirectory.from_config(config).get_heads())
    current = set(MigrationContext.configure(connection).get_current_heads())
    if not current:
        raise InvalidInput(f"the source {shown} is not a Worpen database (no migration was ever applied)")
    if current != heads:
        raise InvalidInput(
            f"the source {shown} is at migration {', '.join(sorted(current))}, not at "
            f"{', '.join(sorted(heads))} (the newest this worpen knows): run this version's `worpen migrate` "
            "(or `worpen serve`) on it first"
        )


async def _migrate(role: str, address: URL, engine: AsyncEngine) -> None:
    async with _connected(role, address, engine):
        pass
    try:
        await upgrade_database(engine)
    except CommandError as exc:
        raise InvalidInput(f"the {role} {_shown(address)} cannot be migrated by this worpen: {exc}") from exc
    except WorpenError as exc:
        raise _unavailable(role, address, exc) from exc


def _columns(table: Table) -> list[Column[Any]]:
    """The columns a copy writes: those the database does not compute itself."""
    return [column for column in table.columns if column.computed is None]


def _insert(table: Table, dialect: str) -> Insert:
    keys = list(table.primary_key.columns)
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=keys).returning(*keys)
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=keys).returning(*keys)
    raise InvalidInput(f"copying to {dialect} is not supported (PostgreSQL or SQLite)")


async def _copy_table(
    reader: AsyncConnection,
    target: AsyncEngine,
    target_address: URL,
    table: Table,
    batch_rows: int,
    sample_rows: int,
) -> TableCopy:
    columns = _columns(table)
    try:
        source_rows = await _count(reader, table)
        sample = await _sample(reader, table, columns, sample_rows)
        copied = await _insert_all(reader, target, target_address, table, columns, batch_rows)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        raise WorpenError(f"reading {table.name} from the source failed: {cause}") from exc
    try:
        async with target.connect() as checker:
            if target.dialect.name == "postgresql":
                await _advance_sequences(checker, table)
                await checker.commit()
            target_rows = await _count(checker, table)
            problems = await _compare(checker, table, columns, sample)
    except SQLAlchemyError as exc:
        raise _unavailable("target", target_address, exc) from exc
    if target_rows < source_rows:
        problems = (f"{target_rows} rows on the target, {source_rows} in the source", *problems)
    return TableCopy(table.name, source_rows, copied, target_rows, problems)


async def _insert_all(
    reader: AsyncConnection,
    target: AsyncEngine,
    target_address: URL,
    table: Table,
    columns: Sequence[Column[Any]],
    batch_rows: int,
) -> int:
    """Insert the source's rows of `table` that the target lacks, a batch per transaction; how many."""
    insert = _insert(table, target.dialect.name)
    copied = 0
    rows = await reader.stream(select(*columns).order_by(*table.primary_key.columns))
    async for batch in rows.partitions(batch_rows):
        values = [row._asdict() for row in batch]
        try:
            async with target.begin() as writer:
                copied += len((await writer.execute(insert, values)).all())
        except SQLAlchemyError as exc:
            raise _failed(table, target_address, exc) from exc
    return copied


def _failed(table: Table, address: URL, exc: SQLAlchemyError) -> WorpenError:
    cause = getattr(exc, "orig", None) or exc
    if isinstance(exc, IntegrityError):
        return Conflict(f"copying {table.name}: a row clashes with another the target holds: {cause}")
    return _unavailable("target", address, exc)


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def _advance_sequences(connection: AsyncConnection, table: Table) -> None:
    """Set the sequence of each of the table's serial or identity columns past its highest value (never
    back): rows were inserted with their ids, so the sequence still stands where the target began, and
    the next row the target numbers itself would collide."""
    owned = await connection.execute(
        text(
            "SELECT attname, pg_get_serial_sequence(:table, attname) FROM pg_attribute "
            "WHERE attrelid = CAST(:table AS regclass) AND attnum > 0 AND NOT attisdropped"
        ),
        {"table": table.name},
    )
    for column, sequence in owned.all():
        if sequence is None:
            continue
        highest = (await connection.execute(select(func.max(table.c[column])))).scalar_one()
        if highest is not None:
            await connection.execute(
                text(
                    "SELECT setval(CAST(:sequence AS regclass), GREATEST(:highest, "
                    "COALESCE(pg_sequence_last_value(CAST(:sequence AS regclass)), 0)))"
                ),
                {"sequence": sequence, "highest": highest},
            )


Rows = dict[tuple[Any, ...], dict[str, Any]]
"""Rows by primary key."""


async def _sample(
    reader: AsyncConnection, table: Table, columns: Sequence[Column[Any]], sample_rows: int
) -> Rows:
    """The first and the last `sample_rows` rows of `table` by primary key."""
    keys = list(table.primary_key.columns)
    first = await reader.execute(select(*columns).order_by(*keys).limit(sample_rows))
    last = await reader.execute(select(*columns).order_by(*(key.desc() for key in keys)).limit(sample_rows))
    return {_key(row._asdict(), keys): row._asdict() for row in [*first, *last]}


async def _compare(
    checker: AsyncConnection, table: Table, columns: Sequence[Column[Any]], sample: Rows
) -> tuple[str, ...]:
    """The rows of `sample` that the target lacks or holds otherwise than it would store them."""
    if not sample:
        return ()
    keys = list(table.primary_key.columns)
    found = await checker.execute(select(*columns).where(tuple_(*keys).in_(list(sample))))
    stored = {_key(row._asdict(), keys): row._asdict() for row in found}
    problems: list[str] = []
    for key, row in sample.items():
        if key not in stored:
            problems.append(f"row {_describe(key)} is missing on the target")
        else:
            differing = sorted(
                column.name
                for column in columns
                if stored[key][column.name] != _as_stored(column, row[column.name], checker.dialect)
            )
            if differing:
                problems.append(f"row {_describe(key)} differs on the target: {', '.join(differing)}")
    return tuple(problems)


def _as_stored(column: Column[Any], value: Any, dialect: Dialect) -> Any:
    """`value` as the target reads it back once written: through the conversions the column's type makes
    on that database (on PostgreSQL, whose text holds no U+0000, the schema writes U+FFFD instead)."""
    kind = column.type.dialect_impl(dialect)
    if not isinstance(kind, TypeDecorator) or value is None:
        return value
    if type(kind).process_bind_param is not TypeDecorator.process_bind_param:
        value = kind.process_bind_param(value, dialect)
    if type(kind).process_result_value is not TypeDecorator.process_result_value:
        value = kind.process_result_value(value, dialect)
    return value


def _key(row: dict[str, Any], keys: Sequence[Column[Any]]) -> tuple[Any, ...]:
    return tuple(row[key.name] for key in keys)


def _describe(key: tuple[Any, ...]) -> str:
    return ", ".join(str(part) for part in key)
