"""An optimistic version on agents, so that replicas never lose a status transition, when each row last
changed, so that replicas take in each other's changes, and the alerts raised, so that each is raised once.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import UtcDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before were written by one server: each is at its first revision (0 means "no row").
    op.add_column("agents", sa.Column("revision", sa.Integer, nullable=False, server_default=sa.text("1")))
    op.add_column("agents", sa.Column("changed_at", UtcDateTime, nullable=True))
    op.add_column("agents", sa.Column("alerts", sa.String(64), nullable=False, server_default=""))
    op.create_index("ix_agents_changed_at", "agents", ["changed_at"])


def downgrade() -> None:
    op.drop_index("ix_agents_changed_at", table_name="agents")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("alerts")
        batch.drop_column("changed_at")
        batch.drop_column("revision")
