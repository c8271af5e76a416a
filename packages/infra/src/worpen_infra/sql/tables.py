"""The relational schema, as SQLAlchemy Core tables. Entities stay plain: repositories translate rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

from worpen_core.fleet.readings import READING_NAMES, READINGS, Kind
from worpen_core.telemetry.model import COUNTERS, METRICS

metadata = MetaData()


def _naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not accepted: use UTC-aware values")
    return value.astimezone(UTC).replace(tzinfo=None)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes, stored naive (SQLite has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _naive_utc(value)

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], object] | None:
        """On SQLite, the text SQLAlchemy's DATETIME stores ("2026-12-01 08:00:00.000000"), written by
        `isoformat` less its "+00:00": a flush converts three datetimes per heartbeat, and DATETIME's own
        formatting after `process_bind_param` costs 2.4 µs each, this 1.1."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetimes are not accepted: use UTC-aware values")
            return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


AGENT_READINGS = tuple({"cpu": "cpu_load", "ram": "memory_load"}.get(r.name, r.name) for r in READINGS)
"""The agents table's columns for each of Readings' fields, in order (two kept their first names)."""
SAMPLE_READINGS = READING_NAMES
"""The agent_samples table's columns for each of Readings' fields, in order."""


def _reading_columns(names: tuple[str, ...]) -> list[Column[Any]]:
    """A column per reading, typed by its kind: what a new field of Readings adds to a table."""
    return [
        Column(name, Float if reading.kind is Kind.PERCENT else BigInteger, nullable=not reading.required)
        for name, reading in zip(names, READINGS, strict=True)
    ]


agents = Table(
    "agents",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reported_status", String(16), nullable=False),
    Column("last_seen", UtcDateTime, nullable=False),
    Column("registered_at", UtcDateTime, nullable=False),
    Column("ip", String(64)),
    Column("os", String(255)),
    Column("version", String(255)),
    Column("peers", JSON, nullable=False),
    *_reading_columns(AGENT_READINGS),
)

agent_samples = Table(
    "agent_samples",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", String(128), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    *_reading_columns(SAMPLE_READINGS),
    Index("ix_agent_samples_agent_id_at", "agent_id", "at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("agent_ids", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime),
    Column("revoked_at", UtcDateTime),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", String(64), nullable=False),
    Column("actor_key_id", String(32), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(600), nullable=False),
    Column("node", String(128)),
    Column("outcome", String(16), nullable=False),
    Column("error", String(4000)),
    Column("finished_at", UtcDateTime),
    Index("ix_audit_log_at", "at"),
)

events = Table(
    "events",
    metadata,
    # AUTOINCREMENT: an id is never handed out twice, even after retention deleted every row, so that a
    # reader resuming after an id never skips a newer event that reused it.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_events_at", "at"),
    Index("ix_events_type_id", "type", "id"),
    sqlite_autoincrement=True,
)

logs = Table(
    "logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("timestamp", UtcDateTime, nullable=False),
    Column("level", String(8), nullable=False),
    Column("source", String(300), nullable=False),
    Column("message", Text, nullable=False),
    Column("fields", JSON, nullable=False),
    Column("size", Integer, nullable=False),
    Index("ix_logs_timestamp", "timestamp"),
    Index("ix_logs_source_id", "source", "id"),
    Index("ix_logs_level_id", "level", "id"),
    sqlite_autoincrement=True,
)

LOGS_FULL_TEXT = "logs_fts"
"""The full-text index of logs.message on SQLite: an FTS5 table over `logs` (external content), created by
migration 0004 and kept in step by triggers. SQLAlchemy cannot describe a virtual table, so it and the
shadow tables FTS5 makes for it are not in `metadata` (see `described`)."""


def described(name: str) -> bool:
    """Whether `metadata` describes the table `name`: every table but the full-text index's."""
    return name != LOGS_FULL_TEXT and not name.startswith(f"{LOGS_FULL_TEXT}_")


AGGREGATE_PARTS = ("min", "max", "sum", "count")
"""A rollup's columns for each metric of METRICS: `<metric>_<part>`."""


def _rollup_columns() -> list[Column[Any]]:
    """min and max (NULL when the bucket had no value), sum and count (0 then) per metric, and the bytes
    each counter grew by."""
    columns: list[Column[Any]] = []
    for metric in METRICS:
        columns.append(Column(f"{metric}_min", Float))
        columns.append(Column(f"{metric}_max", Float))
        columns.append(Column(f"{metric}_sum", Float, nullable=False))
        columns.append(Column(f"{metric}_count", Integer, nullable=False))
    columns.extend(Column(counter, BigInteger, nullable=False) for counter in COUNTERS)
    return columns


telemetry_rollups = Table(
    "telemetry_rollups",
    metadata,
    Column("tier", Integer, primary_key=True),
    Column("series", String(128), primary_key=True),
    Column("start", BigInteger, primary_key=True),
    *_rollup_columns(),
    Index("ix_telemetry_rollups_tier_start", "tier", "start"),
    sqlite_with_rowid=False,
)
"""One row per bucket: its tier (seconds), series (an agent id, or the fleet's "*"), start (seconds since
the epoch) and aggregates. Without a rowid on SQLite: the key is the row's only index, its storage."""

telemetry_progress = Table(
    "telemetry_progress",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("watermark", BigInteger, nullable=False),
)
"""One row (id 1): the id of the last raw sample rolled up."""

telemetry_counters = Table(
    "telemetry_counters",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    *(Column(counter, BigInteger) for counter in COUNTERS),
)
"""Each agent's last counters rolled up: where the rates of its next sample start from."""
