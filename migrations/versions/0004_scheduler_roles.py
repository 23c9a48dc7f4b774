"""Scheduler roles: run heartbeats and schedule firings.

`training_runs.heartbeat_at`: refreshed by the process running a run, so that any process on any
host can tell a run whose process died (its heartbeat stopped). `schedule_firings`: one row per
firing of a stored schedule, claimed by the scheduler that runs it (the primary key admits one).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: SQLite adds it in place (ALTER TABLE ADD COLUMN).
    op.add_column(
        "training_runs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_table(
        "schedule_firings",
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=128), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "scheduled_at", name=op.f("pk_schedule_firings")),
    )
    op.create_index(
        op.f("ix_schedule_firings_claimed_at"), "schedule_firings", ["claimed_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_schedule_firings_claimed_at"), table_name="schedule_firings")
    op.drop_table("schedule_firings")
    # SQLite drops a column by rebuilding the table; nothing references training_runs, so the
    # rebuild cascades nowhere.
    with op.batch_alter_table("training_runs") as batch:
        batch.drop_column("heartbeat_at")
