"""The remediations running on an agent's node, stored with its status, so that every replica keeps an
agent HEALING until the last one ends (not only the replica whose rule engine began them).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from worpen_infra.sql.tables import JsonDocument

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("agents", sa.Column("healing", JsonDocument, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("healing")
