"""The fleet (agents and their telemetry samples) and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agents",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reported_status", sa.String(16), nullable=False),
        sa.Column("cpu_load", sa.Float, nullable=False),
        sa.Column("memory_load", sa.Float, nullable=False),
        sa.Column("last_seen", UtcDateTime, nullable=False),
        sa.Column("registered_at", UtcDateTime, nullable=False),
        sa.Column("ip", sa.String(64)),
        sa.Column("os", sa.String(255)),
        sa.Column("version", sa.String(255)),
        sa.Column("uptime_seconds", sa.BigInteger),
        sa.Column("disk", sa.Float),
        sa.Column("net_rx_bytes", sa.BigInteger),
        sa.Column("net_tx_bytes", sa.BigInteger),
        sa.Column("peers", sa.JSON, nullable=False),
    )
    op.create_table(
        "agent_samples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agent_id", sa.String(128), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("cpu", sa.Float, nullable=False),
        sa.Column("ram", sa.Float, nullable=False),
        sa.Column("disk", sa.Float),
        sa.Column("net_rx_bytes", sa.BigInteger),
        sa.Column("net_tx_bytes", sa.BigInteger),
        sa.Column("uptime_seconds", sa.BigInteger),
    )
    op.create_index("ix_agent_samples_agent_id_at", "agent_samples", ["agent_id", "at"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("agent_ids", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime),
        sa.Column("revoked_at", UtcDateTime),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_agent_samples_agent_id_at", table_name="agent_samples")
    op.drop_table("agent_samples")
    op.drop_table("agents")
