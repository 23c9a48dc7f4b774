"""The schema as SQLAlchemy 2 typed ORM models; `migrations/versions` must build exactly this.

Conventions that the rest of `storage` relies on:
- every timestamp is a timezone-aware UTC `datetime` (`UtcDateTime`), on SQLite as well;
- message ids grow with insertion, so "order of a chat" is `ORDER BY id` (index `chat_id, id`);
- closed vocabularies (platform, chat kind, run status) are short strings with a CHECK, not
  native enums, so migrations never have to create or alter a PostgreSQL enum type;
- constraint and index names come from `NAMING_CONVENTION`, which SQLite batch migrations need
  to find constraints again when they copy a table.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite autoincrements only an `INTEGER PRIMARY KEY` (the rowid alias); a BIGINT key stays NULL.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Platform(StrEnum):
    TELEGRAM = "telegram"
    CONSOLE = "console"


class ChatKind(StrEnum):
    PRIVATE = "private"
    GROUP = "group"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; SQLite keeps naive UTC text, PostgreSQL `timestamptz`.

    Naive datetimes are refused when bound: a local time silently taken for UTC is the bug this
    type exists to prevent.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware datetime (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
    }


class User(Base):
    """A person on one platform; `opted_out` keeps their messages out of training exports."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("platform", "external_id"),
        CheckConstraint("platform IN ('telegram', 'console')", name="platform"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    opted_out: Mapped[bool] = mapped_column(default=False)


class Chat(Base):
    """A conversation: a private chat with the bot, a group, or a console session."""

    __tablename__ = "chats"
    __table_args__ = (
        UniqueConstraint("platform", "external_id"),
        CheckConstraint("platform IN ('telegram', 'console')", name="platform"),
        CheckConstraint("kind IN ('private', 'group')", name="kind"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    title: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChatContextStart(Base):
    """Where a chat's context begins after its last /reset: only messages after
    `after_message_id` feed the model. In the database so that every replica, and a restarted
    process, honours a reset. A watermark, not a foreign key: the message it names may be deleted
    (/forget, retention) without undoing the reset."""

    __tablename__ = "chat_context_starts"

    chat_id: Mapped[int] = mapped_column(
        ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True
    )
    after_message_id: Mapped[int] = mapped_column(BigInteger)
    reset_at: Mapped[datetime] = mapped_column(default=utcnow)


class Message(Base):
    """One turn of a chat: from a user (`user_id`) or from the bot (`from_bot`, no user).

    `external_id` is the platform's own message id (Telegram's `message_id`, unique per chat), so
    a callback or a "reply to" can be mapped back to our row. Bot messages record the name of the
    model version that produced them (a name, not a key: a reply made by an unregistered
    checkpoint directory is still recorded) and the generation latency.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_chat_id_id", "chat_id", "id"),
        UniqueConstraint("chat_id", "external_id"),
        CheckConstraint("(user_id IS NULL) = from_bot", name="sender"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    from_bot: Mapped[bool] = mapped_column(default=False)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    external_id: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(128))
    latency_ms: Mapped[float | None]


class Feedback(Base):
    """👍 (+1) or 👎 (-1) on a bot message; one per user and message, a second press changes it."""

    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id"),
        CheckConstraint("value IN (-1, 1)", name="value"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    value: Mapped[int] = mapped_column(SmallInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaughtPair(Base):
    """A reply someone taught the bot explicitly ("when I say X, answer Y")."""

    __tablename__ = "taught_pairs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    context: Mapped[str] = mapped_column(Text)
    reply: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    chat_id: Mapped[int | None] = mapped_column(
        ForeignKey("chats.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HandledCommand(Base):
    """A command a platform delivered, by its message id, so that a redelivery is not answered
    again (texts need no such row: the stored message carries its platform id). `update_id`: the
    platform update that claimed it (None for commands claimed before revision 0007), so that the
    same update handled again after a crash is answered, not taken for a redelivery."""

    __tablename__ = "handled_commands"
    __table_args__ = (
        UniqueConstraint("platform", "chat_external_id", "external_id"),
        CheckConstraint("platform IN ('telegram', 'console')", name="platform"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_external_id: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    update_id: Mapped[int | None] = mapped_column(BigInteger)


class DeliveryStatus(StrEnum):
    """Where an inbox update or an outbox message stands: `pending` until a process finishes it,
    then `done` (handled; for the outbox: sent) or `failed` (given up, with the reason)."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class InboxUpdate(Base):
    """An update a platform delivered, stored before it is confirmed to the platform.

    Unique by the platform's update id, so a redelivery is stored once. A process claims a
    pending update by leasing it (`claimed_by`, `locked_until`); a claim that is not renewed
    expires, and another process (or the same one restarted) takes the update over. Only the
    oldest pending update of a chat can be claimed, so a chat's updates are handled one at a time
    and in order by however many processes. Once handled, the payload (the person's text, names)
    is dropped; the row stays a while to recognise redeliveries.
    """

    __tablename__ = "inbox_updates"
    __table_args__ = (
        UniqueConstraint("platform", "update_id"),
        CheckConstraint("platform IN ('telegram', 'console')", name="platform"),
        CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    update_id: Mapped[int] = mapped_column(BigInteger)
    chat_key: Mapped[str | None] = mapped_column(String(64))  # the chat's platform id, if any
    payload: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims so far
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)


Index(
    "ix_inbox_updates_pending",
    InboxUpdate.platform,
    InboxUpdate.chat_key,
    InboxUpdate.update_id,
    sqlite_where=text("status = 'pending'"),
    postgresql_where=text("status = 'pending'"),
)


class OutboxMessage(Base):
    """A message to send, stored before it is sent (in the transaction that decided to send it).

    A process claims the oldest pending message of a chat whose time has come (a lease, as for
    the inbox) and sends it; a refusal that may pass (flood control, a server error, a timeout)
    puts it back with a later `next_attempt_at`, which holds back that chat only. `dedupe_key`
    makes queueing idempotent: the answer to one stored message, or the n-th message a handler
    sent for one update, is queued once however often the update is handled. `message_id` is our
    stored bot message it carries (a /forget of it takes the pending message along).
    """

    __tablename__ = "outbox_messages"
    __table_args__ = (
        UniqueConstraint("dedupe_key"),
        CheckConstraint("platform IN ('telegram', 'console')", name="platform"),
        CheckConstraint("status IN ('pending', 'done', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    platform: Mapped[str] = mapped_column(String(16))
    chat_key: Mapped[str] = mapped_column(String(64))  # the chat's platform id
    text: Mapped[str] = mapped_column(Text)
    reply_to_external_id: Mapped[str | None] = mapped_column(String(64))
    reply_markup: Mapped[dict[str, Any] | None]
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    dedupe_key: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING.value)
    pieces_sent: Mapped[int] = mapped_column(Integer, default=0)  # of a text sent in pieces
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed sends so far
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]
    external_id: Mapped[str | None] = mapped_column(String(64))  # the platform's id once sent
    error: Mapped[str | None] = mapped_column(Text)


Index(
    "ix_outbox_messages_pending",
    OutboxMessage.platform,
    OutboxMessage.chat_key,
    OutboxMessage.id,
    sqlite_where=text("status = 'pending'"),
    postgresql_where=text("status = 'pending'"),
)


class ModelVersion(Base):
    """A registered checkpoint; at most one row has `is_active` (a partial unique index)."""

    __tablename__ = "model_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    checkpoint_path: Mapped[str] = mapped_column(String(1024))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    metrics: Mapped[dict[str, Any] | None]
    is_active: Mapped[bool] = mapped_column(default=False)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL")
    )


Index(
    "uq_model_versions_one_active",
    ModelVersion.is_active,
    unique=True,
    sqlite_where=text("is_active"),
    postgresql_where=text("is_active"),
)


class ModelActivation(Base):
    """The activation history, used as an undo stack: rollback pops the newest entry."""

    __tablename__ = "model_activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), index=True
    )
    activated_at: Mapped[datetime] = mapped_column(default=utcnow)
    rolled_back: Mapped[bool] = mapped_column(default=False)


class ModelFile(Base):
    """One file of a model version's checkpoint directory, stored with the version so that a
    replica on any host can serve it (no shared disk): verified by `sha256` before it is used."""

    __tablename__ = "model_files"

    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content: Mapped[bytes] = mapped_column(LargeBinary)


class TrainingRun(Base):
    """One retraining attempt; at most one is `running` (a partial unique index).

    `last_message_id` / `last_taught_pair_id` are the export watermarks: the next run exports
    what came after those of the last successful run.
    """

    __tablename__ = "training_runs"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    new_pairs: Mapped[int | None]
    total_pairs: Mapped[int | None]
    metrics: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", ondelete="SET NULL"), index=True
    )
    last_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_taught_pair_id: Mapped[int | None] = mapped_column(BigInteger)
    # Refreshed every few seconds by the process running the run: a run whose heartbeat stopped
    # died, on whichever host it ran (a pid means nothing on another host).
    heartbeat_at: Mapped[datetime | None]


Index(
    "uq_training_runs_one_running",
    TrainingRun.status,
    unique=True,
    sqlite_where=text("status = 'running'"),
    postgresql_where=text("status = 'running'"),
)


class ScheduleFiring(Base):
    """One firing of a stored schedule, claimed by the scheduler that runs it: the primary key
    admits one claim per (schedule, scheduled time), so a period runs once even when two
    schedulers believe they lead for a moment (a lost lock not yet noticed)."""

    __tablename__ = "schedule_firings"

    job_id: Mapped[str] = mapped_column(String(191), primary_key=True)
    scheduled_at: Mapped[datetime] = mapped_column(primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(128))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
