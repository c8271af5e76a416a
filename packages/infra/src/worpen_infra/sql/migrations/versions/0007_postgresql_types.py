"""Full-text search, JSONB and 64-bit ids on PostgreSQL (nothing changes on SQLite).

On PostgreSQL: JSON columns become JSONB; the ids of the tables that grow for the installation's whole life
become BIGINT, their sequences too (a serial's sequence keeps its own type, and stops at 2^31 - 1 however
wide the column is); the log gets a GIN index on its messages' words (tables.LOGS_DOCUMENT), where SQLite has
its FTS5 table (migration 0004). SQLite's JSON is text either way, and its INTEGER ids are 64-bit already.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

JSON_COLUMNS = {
    "agents": ("peers",),
    "api_keys": ("agent_ids",),
    "events": ("payload",),
    "logs": ("fields",),
    "automation_runs": ("context", "plan", "applied", "logs"),
    "automation_targets": ("attempts",),
    "notification_deliveries": ("body",),
    "pipeline_definitions": ("stages",),
    "pipeline_stages": ("spec",),
}
SERIAL_IDS = ("agent_samples", "events", "logs", "incident_timeline", "notification_deliveries")
LOGS_DOCUMENT = (
    "to_tsvector('simple'::regconfig, regexp_replace(message, '[^[:alnum:]]+'::text, ' '::text, 'g'::text))"
)
"""tables.LOGS_DOCUMENT as this migration wrote it (a query must spell the indexed expression exactly)."""


def _retype(json: str, integer: str) -> None:
    for table, columns in JSON_COLUMNS.items():
        changes = ", ".join(
            f'ALTER COLUMN "{column}" TYPE {json} USING "{column}"::{json}' for column in columns
        )
        op.execute(f"ALTER TABLE {table} {changes}")
    for table in SERIAL_IDS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN id TYPE {integer}")
        sequence = (
            op.get_bind().exec_driver_sql(f"SELECT pg_get_serial_sequence('{table}', 'id')").scalar_one()
        )
        op.execute(f"ALTER SEQUENCE {sequence} AS {integer}")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    _retype("jsonb", "bigint")
    op.execute(f"CREATE INDEX ix_logs_document ON logs USING gin ({LOGS_DOCUMENT})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_logs_document")
    _retype("json", "integer")
