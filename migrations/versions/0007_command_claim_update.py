"""Command claims remember the update that claimed them.

`handled_commands.update_id`: the platform update whose handling claimed the command. A process
that dies after claiming a command and before answering it leaves the claim behind; the update
stays in the inbox and is handled again (after a restart, or by another replica once the lease
runs out). With the update's id on the claim, that second run is recognised as the same update
and answers the command; a different update carrying the same message (a duplicate delivery)
is still dropped. Claims made before this revision have none and keep being dropped on a
redelivery, as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable column without a default: SQLite adds it in place (ALTER TABLE ADD COLUMN).
    op.add_column("handled_commands", sa.Column("update_id", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    # SQLite drops a column by rebuilding the table; nothing references handled_commands.
    with op.batch_alter_table("handled_commands") as batch:
        batch.drop_column("update_id")
