"""Which replica holds each connected agent's stream, and where the other replicas reach it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import UtcDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_streams",
        sa.Column("agent_id", sa.String(128), primary_key=True),
        sa.Column("replica_id", sa.String(200), nullable=False),
        sa.Column("address", sa.String(300), nullable=False),
        sa.Column("connected_at", UtcDateTime, nullable=False),
        sa.Column("peer", sa.String(300), nullable=False),
        sa.Column("hello", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("agent_streams")
