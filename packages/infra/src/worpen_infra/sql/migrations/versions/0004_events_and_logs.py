"""The journal of domain events and the central log, with the log's full-text index (FTS5 on SQLite).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

FULL_TEXT = (
    "CREATE VIRTUAL TABLE logs_fts USING fts5(message, content='logs', content_rowid='id')",
    "CREATE TRIGGER logs_fts_insert AFTER INSERT ON logs BEGIN "
    "INSERT INTO logs_fts(rowid, message) VALUES (new.id, new.message); END",
    "CREATE TRIGGER logs_fts_delete AFTER DELETE ON logs BEGIN "
    "INSERT INTO logs_fts(logs_fts, rowid, message) VALUES ('delete', old.id, old.message); END",
)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_at", "events", ["at"])
    op.create_index("ix_events_type_id", "events", ["type", "id"])
    op.create_table(
        "logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("timestamp", UtcDateTime, nullable=False),
        sa.Column("level", sa.String(8), nullable=False),
        sa.Column("source", sa.String(300), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_logs_timestamp", "logs", ["timestamp"])
    op.create_index("ix_logs_source_id", "logs", ["source", "id"])
    op.create_index("ix_logs_level_id", "logs", ["level", "id"])
    if op.get_bind().dialect.name == "sqlite":
        for statement in FULL_TEXT:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER logs_fts_delete")
        op.execute("DROP TRIGGER logs_fts_insert")
        op.execute("DROP TABLE logs_fts")
    for index in ("ix_logs_level_id", "ix_logs_source_id", "ix_logs_timestamp"):
        op.drop_index(index, table_name="logs")
    op.drop_table("logs")
    op.drop_index("ix_events_type_id", table_name="events")
    op.drop_index("ix_events_at", table_name="events")
    op.drop_table("events")
