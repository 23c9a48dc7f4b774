"""Users, chats and messages: find-or-create the participants, save turns, read a chat back.

Every function takes a `Session` and leaves the commit to the caller, except that
`save_exchange` is meant to be the whole transaction of "a user said X, the bot answered Y".
Results are frozen dataclasses, not ORM objects, so they can cross threads and outlive the session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    bindparam,
    insert,
    null,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from storage.database import execute_dml
from storage.dialects import upsert_insert
from storage.errors import NotFoundError
from storage.storable_text import check_optional, check_storable
from storage.tables import Chat, ChatKind, Message, Platform, User, utcnow


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


def _as_turn(row: Row[*tuple[Any, ...]]) -> Turn:
    # select(*TURN_COLUMNS) is typed as ten columns plus any number more, which Turn(*row)
    # would reject: the row is taken as it comes, its columns in TURN_COLUMNS order.
    return Turn(*row)


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


# Statements built once, executed with parameters: building and cache-keying a statement on
# every call costs about as much CPU as running it (measured: 0.2 ms vs 0.1 ms per statement),
# and saving turns is the one hot path of the app. Plain Core tables, no ORM layer, for the same
# reason.
_users = cast(Table, User.__table__)
_chats = cast(Table, Chat.__table__)
_messages = cast(Table, Message.__table__)

_USER_MATCHES = (
    _users.c.platform == bindparam("user_platform"),
    _users.c.external_id == bindparam("user_external_id"),
)
_FIND_USER: Select[int, str | None] = select(_users.c.id, _users.c.display_name).where(
    *_USER_MATCHES
)
_FIND_CHAT: Select[int] = select(_chats.c.id).where(
    _chats.c.platform == bindparam("chat_platform"),
    _chats.c.external_id == bindparam("chat_external_id"),
)
# Both participants in one round trip: SELECT (chat id), (user id), (user name).
_FIND_PARTICIPANTS = select(
    _FIND_CHAT.scalar_subquery().label("chat_id"),
    select(_users.c.id).where(*_USER_MATCHES).scalar_subquery().label("user_id"),
    select(_users.c.display_name).where(*_USER_MATCHES).scalar_subquery().label("display_name"),
)
_INSERT_MESSAGE: ReturningInsert[int] = insert(_messages).returning(_messages.c.id)

# PostgreSQL: turn and reply in ONE statement (the reply selects the turn's new id from a
# data-modifying CTE), a round trip less per exchange; measured +20 % turns/s with 20 writers.
_turn = (
    insert(_messages)
    .values(
        chat_id=bindparam("chat_id"),
        user_id=bindparam("user_id"),
        from_bot=False,
        text=bindparam("turn_text"),
        created_at=bindparam("turn_created_at"),
        reply_to_id=bindparam("turn_reply_to_id"),
        external_id=bindparam("turn_external_id"),
        model_version=None,
        latency_ms=None,
    )
    .returning(_messages.c.id)
    .cte("turn")
)
_INSERT_EXCHANGE = (
    insert(_messages)
    .from_select(
        [
            "chat_id",
            "user_id",
            "from_bot",
            "text",
            "created_at",
            "reply_to_id",
            "external_id",
            "model_version",
            "latency_ms",
        ],
        select(
            bindparam("chat_id", type_=_messages.c.chat_id.type),
            null(),
            true(),
            bindparam("reply_text", type_=_messages.c.text.type),
            bindparam("reply_created_at", type_=_messages.c.created_at.type),
            _turn.c.id,
            bindparam("reply_external_id", type_=_messages.c.external_id.type),
            bindparam("model_version", type_=_messages.c.model_version.type),
            bindparam("latency_ms", type_=_messages.c.latency_ms.type),
        ),
    )
    .returning(_messages.c.id, _messages.c.reply_to_id)
)


def _user_key(user: UserRef) -> dict[str, str]:
    return {
        "user_platform": Platform(user.platform).value,
        "user_external_id": str(user.external_id),
    }


def _chat_key(chat: ChatRef) -> dict[str, str]:
    return {
        "chat_platform": Platform(chat.platform).value,
        "chat_external_id": str(chat.external_id),
    }


def get_or_create_user(session: Session, user: UserRef) -> int:
    """The id of `user`, created if new; safe when many writers see the same new user at once.

    The common case (a known user) costs one SELECT. A new user is inserted with ON CONFLICT DO
    NOTHING, so a concurrent writer that inserted it first makes ours a no-op instead of an error.
    A changed display name is updated.
    """
    key = _user_key(user)
    display_name = check_optional(user.display_name, field="display name")
    row = session.execute(_FIND_USER, key).first()
    if row is None:
        return _create_user(session, key, display_name)
    user_id, stored_name = row
    _update_display_name(session, user_id, stored_name, display_name)
    return user_id


def _update_display_name(
    session: Session, user_id: int, stored: str | None, seen: str | None
) -> None:
    if seen is not None and seen != stored:
        session.execute(update(_users).where(_users.c.id == user_id).values(display_name=seen))


def _create_user(session: Session, key: dict[str, str], display_name: str | None) -> int:
    inserted: int | None = session.execute(
        upsert_insert(session, _users)
        .values(
            platform=key["user_platform"],
            external_id=key["user_external_id"],
            display_name=display_name,
        )
        .on_conflict_do_nothing(index_elements=["platform", "external_id"])
        .returning(_users.c.id)
    ).scalar()
    if inserted is not None:
        return inserted
    # A concurrent writer created it first; its row is visible now that our insert waited for it.
    user_id, _ = session.execute(_FIND_USER, key).one()
    return user_id


def get_or_create_chat(session: Session, chat: ChatRef) -> int:
    """The id of `chat`, created if new; concurrency-safe like `get_or_create_user`."""
    key = _chat_key(chat)
    found = session.execute(_FIND_CHAT, key).scalar()
    return found if found is not None else _create_chat(session, chat, key)


def _create_chat(session: Session, chat: ChatRef, key: dict[str, str]) -> int:
    inserted: int | None = session.execute(
        upsert_insert(session, _chats)
        .values(
            platform=key["chat_platform"],
            external_id=key["chat_external_id"],
            kind=ChatKind(chat.kind).value,
            title=check_optional(chat.title, field="chat title"),
        )
        .on_conflict_do_nothing(index_elements=["platform", "external_id"])
        .returning(_chats.c.id)
    ).scalar()
    if inserted is not None:
        return inserted
    return session.execute(_FIND_CHAT, key).scalar_one()


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
        model_version=None,
        latency_ms=None,
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
    # Always the full set of columns, so the one compiled statement is reused.
    return session.execute(_INSERT_MESSAGE, values).scalar_one()


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
    chat_key, user_key = _chat_key(chat), _user_key(user)
    display_name = check_optional(user.display_name, field="display name")
    found = session.execute(_FIND_PARTICIPANTS, {**chat_key, **user_key}).one()
    chat_id = found.chat_id if found.chat_id is not None else _create_chat(session, chat, chat_key)
    if found.user_id is None:
        user_id = _create_user(session, user_key, display_name)
    else:
        user_id = found.user_id
        _update_display_name(session, user_id, found.display_name, display_name)
    now = utcnow()
    values = {
        "chat_id": chat_id,
        "user_id": user_id,
        "turn_text": text,
        "turn_created_at": turn_created_at or now,
        "turn_reply_to_id": turn_reply_to_id,
        "turn_external_id": None if turn_external_id is None else str(turn_external_id),
        "reply_text": reply,
        "reply_created_at": now,
        "reply_external_id": None if reply_external_id is None else str(reply_external_id),
        "model_version": model_version,
        "latency_ms": latency_ms,
    }
    if session.get_bind().dialect.name == "postgresql":
        reply_id, turn_id = session.execute(_INSERT_EXCHANGE, values).one()
    else:  # SQLite has no INSERT inside WITH; in-process, two statements cost no round trip
        turn_id = _insert_message(
            session,
            chat_id=chat_id,
            user_id=user_id,
            from_bot=False,
            text=text,
            created_at=values["turn_created_at"],
            reply_to_id=turn_reply_to_id,
            external_id=values["turn_external_id"],
            model_version=None,
            latency_ms=None,
        )
        reply_id = _insert_message(
            session,
            chat_id=chat_id,
            user_id=None,
            from_bot=True,
            text=reply,
            created_at=now,
            reply_to_id=turn_id,
            external_id=values["reply_external_id"],
            model_version=model_version,
            latency_ms=latency_ms,
        )
    return SavedExchange(chat_id=chat_id, user_id=user_id, turn_id=turn_id, reply_id=reply_id)


def recent_context(session: Session, chat_id: int, k: int) -> list[Turn]:
    """The last `k` messages of a chat, oldest first (what the model conditions on)."""
    if k <= 0:
        return []
    rows = session.execute(
        select(*TURN_COLUMNS).where(Message.chat_id == chat_id).order_by(Message.id.desc()).limit(k)
    ).all()
    return [_as_turn(row) for row in reversed(rows)]


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
    return [_as_turn(row) for row in session.execute(query)]


def get_turn(session: Session, message_id: int) -> Turn | None:
    row = session.execute(select(*TURN_COLUMNS).where(Message.id == message_id)).first()
    return None if row is None else _as_turn(row)


def find_turn_by_external_id(session: Session, chat_id: int, external_id: str | int) -> Turn | None:
    """Map a platform message id (a Telegram callback, a "reply to") back to our message."""
    row = session.execute(
        select(*TURN_COLUMNS).where(
            Message.chat_id == chat_id, Message.external_id == str(external_id)
        )
    ).first()
    return None if row is None else _as_turn(row)


def find_reply_to(session: Session, turn_id: int) -> Turn | None:
    """The bot's reply to our message `turn_id`, if one was stored (the first, should there be
    several)."""
    row = session.execute(
        select(*TURN_COLUMNS)
        .where(Message.reply_to_id == turn_id, Message.from_bot.is_(True))
        .order_by(Message.id)
        .limit(1)
    ).first()
    return None if row is None else _as_turn(row)


def set_external_id(session: Session, message_id: int, external_id: str | int) -> None:
    """Record the platform id of a message once it is known (a bot reply after it was sent)."""
    updated = execute_dml(
        session,
        update(Message).where(Message.id == message_id).values(external_id=str(external_id)),
    )
    if updated == 0:
        raise NotFoundError(f"no message with id {message_id}")
