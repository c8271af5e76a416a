"""Limits that hold across the replicas of one database: failed authentications by client, and the
terminal sessions open on each replica.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import SerialId, UtcDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "auth_failures",
        sa.Column("id", SerialId, primary_key=True, autoincrement=True),
        sa.Column("client", sa.String(300), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_auth_failures_client_at", "auth_failures", ["client", "at"])
    op.create_index("ix_auth_failures_at", "auth_failures", ["at"])
    op.create_table(
        "session_slots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("replica_id", sa.String(200), nullable=False),
        sa.Column("renewed_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_session_slots_key_id", "session_slots", ["key_id"])
    op.create_index("ix_session_slots_replica_id", "session_slots", ["replica_id"])


def downgrade() -> None:
    op.drop_table("session_slots")
    op.drop_table("auth_failures")
