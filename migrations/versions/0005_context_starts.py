"""Context starts: where a chat's context begins after a /reset, shared by every replica.

`chat_context_starts`: one row per chat that was reset, holding the id of the chat's last message
at the reset (only later messages feed the model). It lived in a dict in each process: lost on a
restart, unseen by other replicas, grown by every chat ever reset.

A table of its own rather than a column on `chats`: only chats that were reset have a row; a
reset writes a small row instead of updating the busy `chats` row that every message reads; and
the downgrade on SQLite drops a table instead of rebuilding `chats`, the parent of every message.
`after_message_id` is a watermark, not a foreign key: deleting that message (/forget, retention)
must not undo the reset. (SQLite may give the id of a deleted newest message to the next one;
such a message then stays out of the context too: the context is shorter, never older.)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# chats.id: INTEGER on SQLite (the rowid alias), BIGINT elsewhere.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "chat_context_starts",
        sa.Column("chat_id", BIG_ID, nullable=False),
        sa.Column("after_message_id", sa.BigInteger(), nullable=False),
        sa.Column("reset_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["chats.id"],
            name=op.f("fk_chat_context_starts_chat_id_chats"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_chat_context_starts")),
    )


def downgrade() -> None:
    op.drop_table("chat_context_starts")
