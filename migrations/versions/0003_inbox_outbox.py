"""Inbox and outbox: nothing in flight is lost.

`inbox_updates`: every update a platform delivered, stored before it is confirmed, claimed by one
process at a time (a lease) until it is handled. `outbox_messages`: every message to send, stored
before it is sent, claimed the same way until it is delivered or refused for good.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite autoincrements only an INTEGER PRIMARY KEY; BIGINT elsewhere.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "inbox_updates",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_key", sa.String(length=64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "platform IN ('telegram', 'console')", name=op.f("ck_inbox_updates_platform")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed')", name=op.f("ck_inbox_updates_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_updates")),
        sa.UniqueConstraint(
            "platform", "update_id", name=op.f("uq_inbox_updates_platform_update_id")
        ),
    )
    op.create_index(
        op.f("ix_inbox_updates_received_at"), "inbox_updates", ["received_at"], unique=False
    )
    op.create_index(
        "ix_inbox_updates_pending",
        "inbox_updates",
        ["platform", "chat_key", "update_id"],
        unique=False,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )

    op.create_table(
        "outbox_messages",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("chat_key", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("reply_to_external_id", sa.String(length=64), nullable=True),
        sa.Column("reply_markup", sa.JSON(), nullable=True),
        sa.Column("message_id", BIG_ID, nullable=True),
        sa.Column("dedupe_key", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("pieces_sent", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_by", sa.String(length=64), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "platform IN ('telegram', 'console')", name=op.f("ck_outbox_messages_platform")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'failed')", name=op.f("ck_outbox_messages_status")
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_outbox_messages_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_messages")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_outbox_messages_dedupe_key")),
    )
    op.create_index(
        op.f("ix_outbox_messages_created_at"), "outbox_messages", ["created_at"], unique=False
    )
    op.create_index(
        op.f("ix_outbox_messages_message_id"), "outbox_messages", ["message_id"], unique=False
    )
    op.create_index(
        "ix_outbox_messages_pending",
        "outbox_messages",
        ["platform", "chat_key", "id"],
        unique=False,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    # Dropping a table drops its indexes.
    op.drop_table("outbox_messages")
    op.drop_table("inbox_updates")
