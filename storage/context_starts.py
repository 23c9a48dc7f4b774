"""Where each chat's context starts after a /reset (`chat_context_starts`), and the context
from there.

In the database, not in a process: a reset made through one replica holds in every other one and
after a restart. A chat that was never reset has no row; its context starts at its first message.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.dialects import upsert_insert
from storage.tables import ChatContextStart, Message, utcnow

NO_RESET = 0  # below every message id: the whole chat is context


def reset_context(session: Session, chat_id: int) -> int:
    """Start the chat's context after its newest message; that message's id (`NO_RESET` when the
    chat has none). One upsert, so two replicas resetting at once both leave a valid start."""
    newest = session.scalar(select(func.max(Message.id)).where(Message.chat_id == chat_id))
    after = NO_RESET if newest is None else newest
    now = utcnow()
    session.execute(
        upsert_insert(session, ChatContextStart)
        .values(chat_id=chat_id, after_message_id=after, reset_at=now)
        .on_conflict_do_update(
            index_elements=[ChatContextStart.chat_id],
            set_={"after_message_id": after, "reset_at": now},
        )
    )
    return after


def context_texts(session: Session, chat_id: int, k: int) -> list[str]:
    """The texts of the chat's last `k` messages after its context start, oldest first: what the
    model reads. One query (the start is a subquery), as many as reading the messages alone."""
    if k <= 0:
        return []
    start = (
        select(ChatContextStart.after_message_id)
        .where(ChatContextStart.chat_id == chat_id)
        .scalar_subquery()
    )
    newest_first = session.scalars(
        select(Message.text)
        .where(Message.chat_id == chat_id, Message.id > func.coalesce(start, NO_RESET))
        .order_by(Message.id.desc())
        .limit(k)
    ).all()
    return list(reversed(newest_first))


def context_start(session: Session, chat_id: int) -> int:
    """The id after which the chat's context starts (`NO_RESET`: it was never reset)."""
    after = session.scalar(
        select(ChatContextStart.after_message_id).where(ChatContextStart.chat_id == chat_id)
    )
    return NO_RESET if after is None else after
