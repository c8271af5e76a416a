"""Telemetry tiers: rollups per minute and per hour, the rollup's progress and each agent's last counters.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

METRICS = ("cpu", "ram", "disk", "net_rx_rate", "net_tx_rate")
COUNTERS = ("net_rx_bytes", "net_tx_bytes")


def upgrade() -> None:
    aggregates = []
    for metric in METRICS:
        aggregates += [
            sa.Column(f"{metric}_min", sa.Float),
            sa.Column(f"{metric}_max", sa.Float),
            sa.Column(f"{metric}_sum", sa.Float, nullable=False),
            sa.Column(f"{metric}_count", sa.Integer, nullable=False),
        ]
    op.create_table(
        "telemetry_rollups",
        sa.Column("tier", sa.Integer, primary_key=True),
        sa.Column("series", sa.String(128), primary_key=True),
        sa.Column("start", sa.BigInteger, primary_key=True),
        *aggregates,
        *(sa.Column(counter, sa.BigInteger, nullable=False) for counter in COUNTERS),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_telemetry_rollups_tier_start", "telemetry_rollups", ["tier", "start"])
    op.create_table(
        "telemetry_progress",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("watermark", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "telemetry_counters",
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("at", UtcDateTime, nullable=False),
        *(sa.Column(counter, sa.BigInteger) for counter in COUNTERS),
    )


def downgrade() -> None:
    op.drop_table("telemetry_counters")
    op.drop_table("telemetry_progress")
    op.drop_index("ix_telemetry_rollups_tier_start", table_name="telemetry_rollups")
    op.drop_table("telemetry_rollups")
