"""Self-healing: automation rules, their runs and storm protection, notification channels and their
outbox, and incidents with their timelines.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OPEN = sa.text("status != 'RESOLVED'")


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("service", sa.String(300), nullable=False),
        sa.Column("node", sa.String(128), nullable=False),
        sa.Column("issue", sa.String(500), nullable=False),
        sa.Column("action", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=True),
        sa.Column("rule_id", sa.String(40), nullable=True),
        sa.Column("dedup_key", sa.String(1000), nullable=False),
        sa.Column("occurrences", sa.Integer, nullable=False),
        sa.Column("opened_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
        sa.Column("resolved_at", UtcDateTime, nullable=True),
        sa.Column("resolved_by", sa.String(200), nullable=True),
        sa.Column("method", sa.String(16), nullable=True),
        sa.Column("notes", sa.Text, nullable=True),
    )
    op.create_index("ix_incidents_opened_at", "incidents", ["opened_at"])
    op.create_index("ix_incidents_status_opened_at", "incidents", ["status", "opened_at"])
    op.create_index("ix_incidents_dedup_key", "incidents", ["dedup_key"])
    op.create_index(
        "ux_incidents_open_dedup_key",
        "incidents",
        ["dedup_key"],
        unique=True,
        sqlite_where=OPEN,
        postgresql_where=OPEN,
    )
    op.create_table(
        "incident_timeline",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(40), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_incident_timeline_incident_id_id", "incident_timeline", ["incident_id", "id"])
    op.create_table(
        "automation_rules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("target_service", sa.String(300), nullable=False),
        sa.Column("script", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("schedule", sa.String(200), nullable=True),
        sa.Column("cooldown_seconds", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("attempt_window_seconds", sa.Integer, nullable=False),
        sa.Column("backoff_seconds", sa.Integer, nullable=False),
        sa.Column("max_backoff_seconds", sa.Integer, nullable=False),
        sa.Column("reset_after_seconds", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.Column("updated_by_key_id", sa.String(64), nullable=False),
        sa.Column("last_run_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "automation_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("rule_id", sa.String(40), nullable=False),
        sa.Column("rule_name", sa.String(200), nullable=False),
        sa.Column("trigger", sa.String(32), nullable=False),
        sa.Column("event_id", sa.BigInteger, nullable=True),
        sa.Column("target", sa.String(300), nullable=True),
        sa.Column("node", sa.String(128), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("matched", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("context", sa.JSON, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("applied", sa.JSON, nullable=False),
        sa.Column("logs", sa.JSON, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("incident_id", sa.String(40), nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("duration_ms", sa.Float, nullable=True),
    )
    op.create_index("ix_automation_runs_rule_id_started_at", "automation_runs", ["rule_id", "started_at"])
    op.create_index("ix_automation_runs_started_at", "automation_runs", ["started_at"])
    op.create_index("ix_automation_runs_status", "automation_runs", ["status"])
    op.create_index("ix_automation_runs_rule_id_event_id", "automation_runs", ["rule_id", "event_id"])
    op.create_table(
        "automation_targets",
        sa.Column("rule_id", sa.String(40), primary_key=True),
        sa.Column("target", sa.String(300), primary_key=True),
        sa.Column("attempts", sa.JSON, nullable=False),
        sa.Column("last_run_at", UtcDateTime, nullable=True),
        sa.Column("last_event_at", UtcDateTime, nullable=True),
        sa.Column("next_allowed_at", UtcDateTime, nullable=True),
        sa.Column("gave_up_at", UtcDateTime, nullable=True),
        sa.Column("pending_event_id", sa.BigInteger, nullable=True),
        sa.Column("pending_due_at", UtcDateTime, nullable=True),
        sa.Column("incident_id", sa.String(40), nullable=True),
    )
    op.create_index("ix_automation_targets_pending_due_at", "automation_targets", ["pending_due_at"])
    op.create_table(
        "automation_progress",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "notification_channels",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("signing_secret", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("channel", sa.String(100), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("delivered_at", UtcDateTime, nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_notification_deliveries_status_next_attempt_at",
        "notification_deliveries",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    for table in (
        "notification_deliveries",
        "notification_channels",
        "automation_progress",
        "automation_targets",
        "automation_runs",
        "automation_rules",
        "incident_timeline",
        "incidents",
    ):
        op.drop_table(table)
