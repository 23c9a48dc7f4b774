"""A user's control over their data: opting out of training, and being forgotten entirely.

Forgetting deletes, in one transaction (the caller's), every row that holds the user's id or
what they wrote:
- the feedback the user gave;
- the bot's replies to the user's messages (a reply would reveal what it answered), and with them
  any feedback *other* users gave on those replies — counted separately, because it is the one
  place where another user's rows go too;
- the user's messages (other users' messages that replied to one of them keep their text; only
  their `reply_to_id` link becomes NULL);
- their private chat with the bot: the chat row (keyed by their platform id), every message in
  it, the commands recorded as handled there (keyed by it too);
- the outbox messages that carry a deleted message, go to their private chat, or have buttons
  that name them (/forget's own question in a group) and are not sent yet;
- the messages the user taught the bot, and the user row.
Nothing else of anyone else is touched. The deletes are explicit (not left to ON DELETE CASCADE)
so that each count is exact.

Not here, and why: an inbox update keeps its payload only until it is handled (so an update of
theirs still pending is one that came after the /forget, and is handled as a new message); a
delivered outbox message keeps neither its text, its buttons nor its chat (`storage.outbox`).

On SQLite, deleted rows would stay readable in the file's free space and in old frames of the
write-ahead log: connections run with `secure_delete` (`storage.database`), and once the
transaction commits the log is checkpointed and truncated (`_truncate_log_after_commit`).
PostgreSQL keeps deleted row versions until VACUUM reclaims them (autovacuum does, soon after).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Delete, delete, event, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.errors import NotFoundError
from storage.person_messages import person_message_ids, private_chat_id
from storage.tables import (
    Chat,
    DeliveryStatus,
    Feedback,
    HandledCommand,
    Message,
    OutboxMessage,
    TaughtPair,
    User,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForgetResult:
    """How many rows `forget_user` deleted, by kind."""

    messages: int
    bot_replies: int
    feedback: int
    feedback_on_bot_replies: int
    taught_pairs: int
    users: int
    # Their private chat: its row, the bot's messages in it that answered no message of theirs,
    # the commands recorded as handled there, and outbox messages (unsent, or for it).
    chats: int = 0
    other_chat_messages: int = 0
    handled_commands: int = 0
    outbox_messages: int = 0

    @property
    def total(self) -> int:
        return (
            self.messages
            + self.bot_replies
            + self.feedback
            + self.feedback_on_bot_replies
            + self.taught_pairs
            + self.users
            + self.chats
            + self.other_chat_messages
            + self.handled_commands
            + self.outbox_messages
        )


def forget_user(session: Session, user_id: int) -> ForgetResult:
    """Delete everything of `user_id` (see the module docstring); zeros if there is no such user."""
    found = session.execute(
        select(User.platform, User.external_id).where(User.id == user_id)
    ).first()
    if found is None:
        return ForgetResult(0, 0, 0, 0, 0, 0)
    platform, external_id = found
    private_chat = private_chat_id(session, platform, external_id)
    going = Message.id.in_(person_message_ids(user_id, private_chat))
    # Deleted below part by part (for exact counts), the parts of person_message_ids.
    replies_to_them = select(Message.id).where(
        Message.from_bot.is_(True),
        Message.reply_to_id.in_(select(Message.id).where(Message.user_id == user_id)),
    )
    _erase_on_disk_after_commit(session)

    outbox_messages = _deleted(
        session,
        delete(OutboxMessage).where(
            or_(
                OutboxMessage.message_id.in_(select(Message.id).where(going)),
                (OutboxMessage.platform == platform) & (OutboxMessage.chat_key == external_id),
                OutboxMessage.id.in_(_unsent_naming(session, platform, external_id)),
            )
        ),
    )
    feedback = _deleted(session, delete(Feedback).where(Feedback.user_id == user_id))
    feedback_on_replies = _deleted(
        session, delete(Feedback).where(Feedback.message_id.in_(select(Message.id).where(going)))
    )
    bot_replies = _deleted(session, delete(Message).where(Message.id.in_(replies_to_them)))
    messages = _deleted(session, delete(Message).where(Message.user_id == user_id))
    other_chat_messages = _deleted(session, delete(Message).where(Message.chat_id == private_chat))
    taught = _deleted(session, delete(TaughtPair).where(TaughtPair.user_id == user_id))
    handled = _deleted(
        session,
        delete(HandledCommand).where(
            HandledCommand.platform == platform, HandledCommand.chat_external_id == external_id
        ),
    )
    chats = 0
    if private_chat is not None:
        # Pairs others taught there (none: it is the user's own chat) would lose only the link.
        execute_dml(
            session,
            update(TaughtPair).where(TaughtPair.chat_id == private_chat).values(chat_id=None),
        )
        chats = _deleted(session, delete(Chat).where(Chat.id == private_chat))
    users = _deleted(session, delete(User).where(User.id == user_id))
    return ForgetResult(
        messages=messages,
        bot_replies=bot_replies,
        feedback=feedback,
        feedback_on_bot_replies=feedback_on_replies,
        taught_pairs=taught,
        users=users,
        chats=chats,
        other_chat_messages=other_chat_messages,
        handled_commands=handled,
        outbox_messages=outbox_messages,
    )


# Buttons whose callback data ends in a person's platform id: /forget's Yes/No
# (`forget:yes:<id>`, so that only the person who asked can answer).
PERSONAL_BUTTONS = ("forget:",)


def _unsent_naming(session: Session, platform: str, external_id: str) -> list[int]:
    """Outbox messages not delivered (delivery drops the buttons) with a `PERSONAL_BUTTONS`
    button of the user. Few: read and matched here."""
    rows = session.execute(
        select(OutboxMessage.id, OutboxMessage.reply_markup).where(
            OutboxMessage.platform == platform,
            OutboxMessage.status != DeliveryStatus.DONE.value,
            OutboxMessage.reply_markup.is_not(None),
        )
    ).all()
    return [row.id for row in rows if external_id in _people_named(row.reply_markup)]


def _people_named(markup: Any) -> set[str]:
    """The ids that `PERSONAL_BUTTONS` in a Bot API reply markup end in."""
    named: set[str] = set()
    rows = markup.get("inline_keyboard", []) if isinstance(markup, dict) else []
    for row in rows if isinstance(rows, list) else []:
        for button in row if isinstance(row, list) else []:
            data = button.get("callback_data") if isinstance(button, dict) else None
            if isinstance(data, str) and data.startswith(PERSONAL_BUTTONS):
                named.add(data.rpartition(":")[2])
    return named


def _erase_on_disk_after_commit(session: Session) -> None:
    """SQLite: once the deletes commit, copy the write-ahead log into the database and truncate
    it, so the log's old page images of the deleted rows are gone from the disk too."""
    bind = session.get_bind()
    if bind.dialect.name != "sqlite":
        return
    event.listen(session, "after_commit", lambda _session: _truncate_log(bind), once=True)


def _truncate_log(bind: Any) -> None:
    # A raw connection in autocommit: a checkpoint cannot run inside a transaction.
    engine = getattr(bind, "engine", bind)
    try:
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            busy, _, _ = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            cursor.close()
        finally:
            connection.close()
    except (SQLAlchemyError, sqlite3.Error) as exc:
        log.warning("forgotten rows: the write-ahead log was not truncated: %s", exc)
        return
    if busy:  # a reader held on past the busy timeout
        log.warning("forgotten rows: the write-ahead log was busy and was not truncated")


def _deleted(session: Session, statement: Delete) -> int:
    # No ORM session synchronisation: nothing forgotten is loaded in this session.
    return execute_dml(session, statement.execution_options(synchronize_session=False))


def set_opted_out(session: Session, user_id: int, opted_out: bool = True) -> None:
    """Keep (or stop keeping) a user's messages out of training exports."""
    updated = execute_dml(
        session, update(User).where(User.id == user_id).values(opted_out=opted_out)
    )
    if updated == 0:
        raise NotFoundError(f"no user with id {user_id}")


def is_opted_out(session: Session, user_id: int) -> bool:
    value = session.execute(select(User.opted_out).where(User.id == user_id)).scalar()
    if value is None:
        raise NotFoundError(f"no user with id {user_id}")
    return value
