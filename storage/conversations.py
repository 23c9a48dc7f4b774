"""Users, chats and messages: find-or-create the participants, save turns, read a chat back.

Every function takes a `Session` and leaves the commit to the caller, except that
`save_exchange` is meant to be the whole transaction of "a user said X, the bot answered Y".
Results are frozen dataclasses, not ORM objects, so they can cross threads and outlive the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.orm import Session

from storage.dialects import upsert_insert
from storage.errors import NotFoundError
from storage.models import Chat, ChatKind, Message, Platform, User, utcnow
from storage.texts import check_optional, check_storable


@dataclass(frozen=True)
class UserRef:
    """A user as a front end knows them: platform and the platform's own id."""

    platform: Platform | str
    external_id: str | int
    display_name: str | None = None


@dataclass(frozen=True)
class ChatRef:
    """A chat as a front end knows it; `kind` and `title` are recorded when it is first seen."""

    platform: Platform | str
    external_id: str | int
    kind: ChatKind | str = ChatKind.PRIVATE
    title: str | None = None


@dataclass(frozen=True)
class Turn:
    """One stored message; `user_id` is None exactly when `from_bot`."""

    id: int
    chat_id: int
    user_id: int | None
    from_bot: bool
    text: str
    created_at: datetime
    reply_to_id: int | None
    external_id: str | None
    model_version: str | None
    latency_ms: float | None


@dataclass(frozen=True)
class SavedExchange:
    chat_id: int
    user_id: int
    turn_id: int
    reply_id: int


TURN_COLUMNS = (
    Message.id,
    Message.chat_id,
    Message.user_id,
    Message.from_bot,
    Message.text,
    Message.created_at,
    Message.reply_to_id,
    Message.external_id,
    Message.model_version,
    Message.latency_ms,
)


def get_or_create_user(session: Session, user: UserRef) -> int:
    """The id of `user`, created if new; safe when many writers see the same new user at once.

    The common case (a known user) costs one SELECT. A new user is inserted with ON CONFLICT DO
    NOTHING, so a concurrent writer that inserted it first makes ours a no-op instead of an error.
    A changed display name is updated.
    """
    platform = Platform(user.platform).value
    external_id = str(user.external_id)
    display_name = check_optional(user.display_name, field="display name")
    key = (User.platform == platform, User.external_id == external_id)
    row = session.execute(select(User.id, User.display_name).where(*key)).first()
    if row is not None:
        if display_name is not None and display_name != row.display_name:
            session.execute(update(User).where(User.id == row.id).values(display_name=display_name))
        return row.id
    inserted = session.execute(
        upsert_insert(session, User)
        .values(platform=platform, external_id=external_id, display_name=display_name)
        .on_conflict_do_nothing(index_elements=["platform", "external_id"])
        .returning(User.id)
    ).scalar()
    if inserted is not None:
        return inserted
    return session.execute(select(User.id).where(*key)).scalar_one()


def get_or_create_chat(session: Session, chat: ChatRef) -> int:
    """The id of `chat`, created if new; concurrency-safe like `get_or_create_user`."""
    platform = Platform(chat.platform).value
    external_id = str(chat.external_id)
    key = (Chat.platform == platform, Chat.external_id == external_id)
    found = session.execute(select(Chat.id).where(*key)).scalar()
    if found is not None:
        return found
    inserted = session.execute(
        upsert_insert(session, Chat)
        .values(
            platform=platform,
            external_id=external_id,
            kind=ChatKind(chat.kind).value,
            title=check_optional(chat.title, field="chat title"),
        )
        .on_conflict_do_nothing(index_elements=["platform", "external_id"])
        .returning(Chat.id)
    ).scalar()
    if inserted is not None:
        return inserted
    return session.execute(select(Chat.id).where(*key)).scalar_one()


def find_user(session: Session, platform: Platform | str, external_id: str | int) -> int | None:
    return session.execute(
        select(User.id).where(
            User.platform == Platform(platform).value, User.external_id == str(external_id)
        )
    ).scalar()


def find_chat(session: Session, platform: Platform | str, external_id: str | int) -> int | None:
    return session.execute(
        select(Chat.id).where(
            Chat.platform == Platform(platform).value, Chat.external_id == str(external_id)
        )
    ).scalar()


def save_turn(
    session: Session,
    *,
    chat_id: int,
    user_id: int,
    text: str,
    external_id: str | int | None = None,
    reply_to_id: int | None = None,
    created_at: datetime | None = None,
) -> int:
    """Store a user's message; returns its id."""
    return _insert_message(
        session,
        chat_id=chat_id,
        user_id=user_id,
        from_bot=False,
        text=check_storable(text),
        external_id=None if external_id is None else str(external_id),
        reply_to_id=reply_to_id,
        created_at=created_at or utcnow(),
    )


def save_reply(
    session: Session,
    *,
    chat_id: int,
    text: str,
    reply_to_id: int | None,
    model_version: str | None = None,
    latency_ms: float | None = None,
    external_id: str | int | None = None,
    created_at: datetime | None = None,
) -> int:
    """Store a bot message with the model version that made it and how long it took; its id."""
    return _insert_message(
        session,
        chat_id=chat_id,
        user_id=None,
        from_bot=True,
        text=check_storable(text, field="reply"),
        external_id=None if external_id is None else str(external_id),
        reply_to_id=reply_to_id,
        created_at=created_at or utcnow(),
        model_version=model_version,
        latency_ms=latency_ms,
    )


def _insert_message(session: Session, **values: object) -> int:
    # A Core INSERT ... RETURNING: one round trip, none of the unit-of-work bookkeeping.
    return session.execute(insert(Message).values(**values).returning(Message.id)).scalar_one()


def save_exchange(
    session: Session,
    chat: ChatRef,
    user: UserRef,
    text: str,
    reply: str,
    *,
    model_version: str | None = None,
    latency_ms: float | None = None,
    turn_external_id: str | int | None = None,
    reply_external_id: str | int | None = None,
    turn_reply_to_id: int | None = None,
    turn_created_at: datetime | None = None,
) -> SavedExchange:
    """A user's turn and the bot's reply to it; both or neither when run in one transaction.

    Both texts are checked before anything is written, so a bad reply cannot leave a lone turn
    behind even when the caller's transaction is wider than this call.
    """
    check_storable(text)
    check_storable(reply, field="reply")
    chat_id = get_or_create_chat(session, chat)
    user_id = get_or_create_user(session, user)
    turn_id = save_turn(
        session,
        chat_id=chat_id,
        user_id=user_id,
        text=text,
        external_id=turn_external_id,
        reply_to_id=turn_reply_to_id,
        created_at=turn_created_at,
    )
    reply_id = save_reply(
        session,
        chat_id=chat_id,
        text=reply,
        reply_to_id=turn_id,
        model_version=model_version,
        latency_ms=latency_ms,
        external_id=reply_external_id,
    )
    return SavedExchange(chat_id=chat_id, user_id=user_id, turn_id=turn_id, reply_id=reply_id)


def recent_context(session: Session, chat_id: int, k: int) -> list[Turn]:
    """The last `k` messages of a chat, oldest first (what the model conditions on)."""
    if k <= 0:
        return []
    rows = session.execute(
        select(*TURN_COLUMNS).where(Message.chat_id == chat_id).order_by(Message.id.desc()).limit(k)
    ).all()
    return [Turn(*row) for row in reversed(rows)]


def chat_history(
    session: Session, chat_id: int, *, after_id: int | None = None, limit: int | None = None
) -> list[Turn]:
    """A chat's messages in order, optionally after a message id and at most `limit` of them."""
    conditions: list[ColumnElement[bool]] = [Message.chat_id == chat_id]
    if after_id is not None:
        conditions.append(Message.id > after_id)
    query = select(*TURN_COLUMNS).where(*conditions).order_by(Message.id)
    if limit is not None:
        query = query.limit(limit)
    return [Turn(*row) for row in session.execute(query)]


def get_turn(session: Session, message_id: int) -> Turn | None:
    row = session.execute(select(*TURN_COLUMNS).where(Message.id == message_id)).first()
    return None if row is None else Turn(*row)


def find_turn_by_external_id(session: Session, chat_id: int, external_id: str | int) -> Turn | None:
    """Map a platform message id (a Telegram callback, a "reply to") back to our message."""
    row = session.execute(
        select(*TURN_COLUMNS).where(
            Message.chat_id == chat_id, Message.external_id == str(external_id)
        )
    ).first()
    return None if row is None else Turn(*row)


def set_external_id(session: Session, message_id: int, external_id: str | int) -> None:
    """Record the platform id of a message once it is known (a bot reply after it was sent)."""
    result = session.execute(
        update(Message).where(Message.id == message_id).values(external_id=str(external_id))
    )
    if result.rowcount == 0:
        raise NotFoundError(f"no message with id {message_id}")
