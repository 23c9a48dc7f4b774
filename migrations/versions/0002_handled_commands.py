"""Handled commands: a command delivered twice is answered once.

The platform message ids of the commands already handled (texts carry theirs in `messages`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite autoincrements only an INTEGER PRIMARY KEY; BIGINT elsewhere.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "handled_commands",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("chat_external_id", sa.String(length=64), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "platform IN ('telegram', 'console')", name=op.f("ck_handled_commands_platform")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_handled_commands")),
        sa.UniqueConstraint(
            "platform",
            "chat_external_id",
            "external_id",
            name=op.f("uq_handled_commands_platform_chat_external_id_external_id"),
        ),
    )
    op.create_index(
        op.f("ix_handled_commands_created_at"), "handled_commands", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_handled_commands_created_at"), table_name="handled_commands")
    op.drop_table("handled_commands")
