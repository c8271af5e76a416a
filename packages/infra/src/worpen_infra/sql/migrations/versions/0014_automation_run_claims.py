"""A rule runs once per event, held by the database: each run an event fired names what it handles (the
event's first handling, or its deferred plan run when the wait ended) in a `claim` column, unique per
(rule, event) among the runs that have one. Two leader terms that both take one event (one still
finishing a step when it lost the lease) cannot both record, and so both apply, a run for it.

Runs recorded before this migration keep a NULL claim and stay outside the index: they are history, and
an installation may hold more than one for one (rule, event) (a deferred plan's run beside its event's
DEFERRED run, or a handover race); deleting or rewriting what was done would lose it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

CLAIMED = sa.text("claim IS NOT NULL")


def upgrade() -> None:
    op.add_column("automation_runs", sa.Column("claim", sa.String(64), nullable=True))
    op.create_index(
        "ux_automation_runs_rule_id_event_id_claim",
        "automation_runs",
        ["rule_id", "event_id", "claim"],
        unique=True,
        sqlite_where=CLAIMED,
        postgresql_where=CLAIMED,
    )


def downgrade() -> None:
    op.drop_index("ux_automation_runs_rule_id_event_id_claim", "automation_runs")
    with op.batch_alter_table("automation_runs") as batch:
        batch.drop_column("claim")
