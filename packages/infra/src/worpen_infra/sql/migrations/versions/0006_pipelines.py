"""CI/CD pipelines: definitions, runs and their stages, stage logs, and encrypted secrets.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_definitions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("repository", sa.String(2000), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("stages", sa.JSON, nullable=False),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("cron_slot", UtcDateTime, nullable=True),
        sa.Column("webhook_secret", sa.LargeBinary, nullable=True),
        sa.Column("keep_on_failure", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("seq", sa.Integer, nullable=False, unique=True),
        sa.Column("pipeline_id", sa.String(64), nullable=False),
        sa.Column("pipeline_name", sa.String(200), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("triggered_by", sa.String(300), nullable=False),
        sa.Column("repository", sa.String(2000), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(64), nullable=True),
        sa.Column("author", sa.String(300), nullable=True),
        sa.Column("message", sa.Text, nullable=True),
        sa.Column("parent_id", sa.String(40), nullable=True),
        sa.Column("node", sa.String(128), nullable=True),
        sa.Column("keep_on_failure", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("cancelled_by", sa.String(200), nullable=True),
        sa.UniqueConstraint("pipeline_id", "number", name="ux_pipeline_runs_pipeline_id_number"),
    )
    op.create_index("ix_pipeline_runs_status_seq", "pipeline_runs", ["status", "seq"])
    op.create_index("ix_pipeline_runs_node_status", "pipeline_runs", ["node", "status"])
    op.create_table(
        "pipeline_stages",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("container_id", sa.String(128), nullable=True),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("lease_expires_at", UtcDateTime, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("log_lines", sa.Integer, nullable=False),
    )
    op.create_index(
        "ix_pipeline_stages_status_lease_expires_at", "pipeline_stages", ["status", "lease_expires_at"]
    )
    op.create_table(
        "pipeline_stage_logs",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("stage", sa.String(64), primary_key=True),
        sa.Column("number", sa.Integer, primary_key=True),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "pipeline_secrets",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "pipeline_secrets",
        "pipeline_stage_logs",
        "pipeline_stages",
        "pipeline_runs",
        "pipeline_definitions",
    ):
        op.drop_table(table)
