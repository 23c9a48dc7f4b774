"""Which messages are a person's: one definition for what `/export` hands them and what
`/forget` deletes, so the two can never disagree.

A person's messages are what they wrote, the bot's replies to it, and every message of their
private chat with the bot (a reply whose question retention already removed is still theirs).
"""

from __future__ import annotations

from sqlalchemy import CompoundSelect, select, union_all
from sqlalchemy.orm import Session, aliased

from storage.tables import Chat, ChatKind, Message


def private_chat_id(session: Session, platform: str, external_id: str) -> int | None:
    """Our id of the person's private chat with the bot (keyed by their platform id)."""
    return session.execute(
        select(Chat.id).where(
            Chat.platform == platform,
            Chat.external_id == external_id,
            Chat.kind == ChatKind.PRIVATE.value,
        )
    ).scalar()


def person_message_ids(user_id: int, private_chat: int | None) -> CompoundSelect[tuple[int]]:
    """The ids of the person's messages (see the module docstring), as a UNION of lookups that
    can each use an index (user_id, reply_to_id, chat_id). As one OR, PostgreSQL scanned every
    message with a plan costly enough to be JIT-compiled (measured on 300,000 messages, for a user
    with 300: 1.1 s as an OR, 0.13 s as a UNION). An id may come twice: use it with IN."""
    theirs, replies, in_chat = aliased(Message), aliased(Message), aliased(Message)
    return union_all(
        select(theirs.id).where(theirs.user_id == user_id),
        select(replies.id)
        .join(theirs, replies.reply_to_id == theirs.id)
        .where(theirs.user_id == user_id, replies.from_bot.is_(True)),
        select(in_chat.id).where(in_chat.chat_id == private_chat),
    )
