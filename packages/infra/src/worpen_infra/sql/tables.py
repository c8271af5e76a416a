"""The relational schema, as SQLAlchemy Core tables. Entities stay plain: repositories translate rows."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

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


NUL = "\x00"
"""The one character PostgreSQL's text and JSONB cannot hold; what a container writes may contain it."""


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(NUL, "\ufffd") if NUL in value else value
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(item) for item in value]
    return value


class _PostgresqlText(TypeDecorator[str]):
    """Text on PostgreSQL with U+0000 written as U+FFFD (the replacement character): PostgreSQL refuses
    the whole statement otherwise, and a log line or a stage's output would never be stored."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else _without_nul(value)


class _PostgresqlJson(TypeDecorator[Any]):
    """JSONB with U+0000 in strings written as U+FFFD (see _PostgresqlText)."""

    impl = JSONB
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        return _without_nul(value)


JsonDocument = JSON().with_variant(_PostgresqlJson(), "postgresql")
"""A JSON column: JSON text on SQLite, JSONB on PostgreSQL (parsed once on write, not on every read)."""
OutputText = Text().with_variant(_PostgresqlText(), "postgresql")
"""Text written by what Worpen watches (log lines, a stage's output): kept whole on SQLite; on
PostgreSQL, U+0000 becomes U+FFFD (see _PostgresqlText)."""

SerialId = BigInteger().with_variant(Integer(), "sqlite")
"""An id the database numbers, for tables that may outgrow 2^31 rows over their life (journals, logs,
samples): BIGINT on PostgreSQL; INTEGER on SQLite, whose AUTOINCREMENT (and rowid alias) needs exactly that
type name and stores 64 bits anyway."""


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
    Column("peers", JsonDocument, nullable=False),
    *_reading_columns(AGENT_READINGS),
    Column("alerts", String(64), nullable=False, server_default=""),
    Column("revision", Integer, nullable=False, server_default=text("1")),
    Column("changed_at", UtcDateTime),
    Column("healing", JsonDocument),
    Index("ix_agents_changed_at", "changed_at"),
)
"""`alerts`: the metrics currently high, comma-separated; `revision`: the optimistic version replicas save
against (Agent.revision); `changed_at`: when the row last changed, for replicas taking in each other's
changes (NULL for rows written before migration 0009); `healing`: the remediations running on the node
and the status its heartbeats give it meanwhile (Agent.healing; NULL when none runs)."""

agent_samples = Table(
    "agent_samples",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
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
    Column("agent_ids", JsonDocument, nullable=False),
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
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("type", String(64), nullable=False),
    Column("subject", String(300), nullable=False),
    Column("payload", JsonDocument, nullable=False),
    Index("ix_events_at", "at"),
    Index("ix_events_type_id", "type", "id"),
    sqlite_autoincrement=True,
)

logs = Table(
    "logs",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("timestamp", UtcDateTime, nullable=False),
    Column("level", String(8), nullable=False),
    Column("source", String(300), nullable=False),
    Column("message", OutputText, nullable=False),
    Column("fields", JsonDocument, nullable=False),
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


LOGS_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace(message, '[^[:alnum:]]+'::text, ' '::text, 'g'::text))"
)
"""The full-text document of a log message on PostgreSQL: its words (runs of letters and digits), lowercased
and not stemmed, as FTS5's default tokenizer reads them on SQLite. A GIN index on exactly this expression
(LOGS_DOCUMENT_INDEX, migration 0007) serves queries that spell it the same; it is an index, not a column,
so `metadata` does not describe it either."""
LOGS_DOCUMENT_INDEX = "ix_logs_document"


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


incidents = Table(
    "incidents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("service", String(300), nullable=False),
    Column("node", String(128), nullable=False),
    Column("issue", String(500), nullable=False),
    Column("action", String(500), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("trigger", String(32), nullable=True),
    Column("rule_id", String(40), nullable=True),
    Column("dedup_key", String(1000), nullable=False),
    Column("occurrences", Integer, nullable=False),
    Column("opened_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("resolved_at", UtcDateTime, nullable=True),
    Column("resolved_by", String(200), nullable=True),
    Column("method", String(16), nullable=True),
    Column("notes", Text, nullable=True),
    Index("ix_incidents_opened_at", "opened_at"),
    Index("ix_incidents_status_opened_at", "status", "opened_at"),
    Index("ix_incidents_dedup_key", "dedup_key"),
    Index(
        "ux_incidents_open_dedup_key",
        "dedup_key",
        unique=True,
        sqlite_where=text("status != 'RESOLVED'"),
        postgresql_where=text("status != 'RESOLVED'"),
    ),
)
"""One row per incident. At most one incident per dedup key is open (PENDING or FAILED) at a time: the
partial unique index holds that even against concurrent writers."""

incident_timeline = Table(
    "incident_timeline",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("incident_id", String(40), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Index("ix_incident_timeline_incident_id_id", "incident_id", "id"),
    sqlite_autoincrement=True,
)
"""An incident's history, appended to (occurrences, remediation steps, resolution), oldest first."""

automation_rules = Table(
    "automation_rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("trigger", String(32), nullable=False),
    Column("target_service", String(300), nullable=False),
    Column("script", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("schedule", String(200), nullable=True),
    Column("cooldown_seconds", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("attempt_window_seconds", Integer, nullable=False),
    Column("backoff_seconds", Integer, nullable=False),
    Column("max_backoff_seconds", Integer, nullable=False),
    Column("reset_after_seconds", Integer, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("updated_by_key_id", String(64), nullable=False),
    Column("last_run_at", UtcDateTime, nullable=True),
)
"""Automation rules; `schedule` is the cron expression of SCHEDULE rules, `updated_by` (a key's name) and
`updated_by_key_id` who last changed the rule: the audit entries of what the rule does name them."""

CLAIMED = text("claim IS NOT NULL")
"""The runs the claim index holds: those an event fired, from migration 0014 on."""

automation_runs = Table(
    "automation_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("rule_id", String(40), nullable=False),
    Column("rule_name", String(200), nullable=False),
    Column("trigger", String(32), nullable=False),
    Column("event_id", BigInteger, nullable=True),
    Column("target", String(300), nullable=True),
    Column("node", String(128), nullable=True),
    Column("status", String(16), nullable=False),
    Column("matched", Boolean, nullable=False),
    Column("reason", Text, nullable=True),
    Column("context", JsonDocument, nullable=False),
    Column("plan", JsonDocument, nullable=False),
    Column("applied", JsonDocument, nullable=False),
    Column("logs", JsonDocument, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("incident_id", String(40), nullable=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("claim", String(64), nullable=True),
    Index("ix_automation_runs_rule_id_started_at", "rule_id", "started_at"),
    Index("ix_automation_runs_started_at", "started_at"),
    Index("ix_automation_runs_status", "status"),
    Index("ix_automation_runs_rule_id_event_id", "rule_id", "event_id"),
    Index(
        "ux_automation_runs_rule_id_event_id_claim",
        "rule_id",
        "event_id",
        "claim",
        unique=True,
        sqlite_where=CLAIMED,
        postgresql_where=CLAIMED,
    ),
)
"""What each rule did: the event that triggered it, the plan its script made, what was applied, how it
ended. A run is written RUNNING before its plan is applied, so a crash leaves it to be marked
INTERRUPTED, never lost."""

automation_targets = Table(
    "automation_targets",
    metadata,
    Column("rule_id", String(40), primary_key=True),
    Column("target", String(300), primary_key=True),
    Column("attempts", JsonDocument, nullable=False),
    Column("last_run_at", UtcDateTime, nullable=True),
    Column("last_event_at", UtcDateTime, nullable=True),
    Column("next_allowed_at", UtcDateTime, nullable=True),
    Column("gave_up_at", UtcDateTime, nullable=True),
    Column("pending_event_id", BigInteger, nullable=True),
    Column("pending_due_at", UtcDateTime, nullable=True),
    Column("incident_id", String(40), nullable=True),
    Index("ix_automation_targets_pending_due_at", "pending_due_at"),
)
"""The storm protection of each (rule, target): attempts in the window, backoff, give-up, and the one
deferred event waiting for the backoff to pass."""

automation_progress = Table(
    "automation_progress",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)
"""Where each consumer of the event journal is (the rule engine: the id of the last event it took), and
the last cron slot each schedule fired for."""

notification_channels = Table(
    "notification_channels",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("signing_secret", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""Where scripts may send notifications. The signing secret is a key Worpen signs with, so it is kept
as given (a hash could not sign); it is never returned nor logged."""

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("channel", String(100), nullable=False),
    Column("body", JsonDocument, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("run_id", String(40), nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Index("ix_notification_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    sqlite_autoincrement=True,
)
"""The outbox of notifications: written with the run that asked for them, sent and retried with backoff
by a job, so an acknowledged notification survives a restart."""

pipeline_definitions = Table(
    "pipeline_definitions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("repository", String(2000), nullable=False),
    Column("branch", String(255), nullable=False),
    Column("stages", JsonDocument, nullable=False),
    Column("cron", String(200), nullable=True),
    Column("cron_slot", UtcDateTime, nullable=True),
    Column("webhook_secret", LargeBinary, nullable=True),
    Column("keep_on_failure", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)
"""Pipeline definitions; `cron_slot` is the last cron slot that started a run (claimed atomically), and
`webhook_secret` the push webhook's HMAC key, sealed by the secret cipher."""

pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("seq", Integer, nullable=False, unique=True),
    Column("pipeline_id", String(64), nullable=False),
    Column("pipeline_name", String(200), nullable=False),
    Column("number", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("triggered_by", String(300), nullable=False),
    Column("repository", String(2000), nullable=False),
    Column("branch", String(255), nullable=False),
    Column("commit", String(64), nullable=True),
    Column("author", String(300), nullable=True),
    Column("message", Text, nullable=True),
    Column("parent_id", String(40), nullable=True),
    Column("node", String(128), nullable=True),
    Column("keep_on_failure", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("cancelled_by", String(200), nullable=True),
    UniqueConstraint("pipeline_id", "number", name="ux_pipeline_runs_pipeline_id_number"),
    Index("ix_pipeline_runs_status_seq", "status", "seq"),
    Index("ix_pipeline_runs_node_status", "node", "status"),
)
"""Runs of pipelines; `seq` orders them across pipelines (the queue is served in that order), `number`
within their pipeline."""

pipeline_stages = Table(
    "pipeline_stages",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("spec", JsonDocument, nullable=False),
    Column("status", String(16), nullable=False),
    Column("exit_code", Integer, nullable=True),
    Column("container_id", String(128), nullable=True),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
    Column("lease_expires_at", UtcDateTime, nullable=True),
    Column("error", Text, nullable=True),
    Column("decided_by", String(200), nullable=True),
    Column("log_lines", Integer, nullable=False),
    Index("ix_pipeline_stages_status_lease_expires_at", "status", "lease_expires_at"),
)
"""The stages of each run, with the definition's stage as it was when the run started (`spec`), so an
edit never changes a run under way. A RUNNING stage's lease is extended while Worpen watches it."""

pipeline_stage_logs = Table(
    "pipeline_stage_logs",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("stage", String(64), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("stream", String(8), nullable=False),
    Column("text", OutputText, nullable=False),
    Column("at", UtcDateTime, nullable=False),
)
"""Each stage's output, line by line with secrets already masked, written in batches as it comes."""

pipeline_secrets = Table(
    "pipeline_secrets",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
)
"""Secrets stages may ask for, encrypted (never stored in clear)."""

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)
"""Named leases shared by the replicas of one database (the leader's): who holds each until when, and its
fencing token, which grows each time the lease changes hands."""

agent_streams = Table(
    "agent_streams",
    metadata,
    Column("agent_id", String(128), primary_key=True),
    Column("replica_id", String(200), nullable=False),
    Column("address", String(300), nullable=False),
    Column("connected_at", UtcDateTime, nullable=False),
    Column("peer", String(300), nullable=False),
    Column("hello", Text, nullable=False),
)
"""Which replica holds each connected agent's stream and where the others reach it (its gRPC address),
with the agent's Hello as JSON (version, protocol, capabilities, labels), for the other replicas to show
and relay commands to it. Only several replicas on one database use it."""

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("client", String(300), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_auth_failures_client_at", "client", "at"),
    Index("ix_auth_failures_at", "at"),
)
"""Failed authentications within the throttle's window, by client address, so that its limit holds across
the replicas of one database; each failure forgets those older than the window. Only several replicas on
one database use it."""

session_slots = Table(
    "session_slots",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("replica_id", String(200), nullable=False),
    Column("renewed_at", UtcDateTime, nullable=False),
    Index("ix_session_slots_key_id", "key_id"),
    Index("ix_session_slots_replica_id", "replica_id"),
)
"""Terminal sessions open on each replica, counted against the caps per API key and in all; a replica
renews its rows every few seconds, and rows it stopped renewing (it died) count no more. Only several
replicas on one database use it."""

pipeline_requests = Table(
    "pipeline_requests",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("stage", String(200), nullable=True),
    Column("by", String(200), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("taken", Boolean, nullable=False, default=False),
    Column("answered", Boolean, nullable=False, default=False),
    Column("conflict", Text, nullable=True),
    Index("ix_pipeline_requests_run_id", "run_id"),
)
"""Cancels and approval decisions asked on a replica for the run another drives: that one takes the row,
carries it out and writes the outcome back for the asker, which removes the row. Only several replicas on
one database use it."""
