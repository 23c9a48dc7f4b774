"""Taught pairs: replies people taught the bot explicitly, kept for the next retraining."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, insert, select
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.storable_text import check_storable
from storage.tables import TaughtPair, utcnow


@dataclass(frozen=True)
class Taught:
    id: int
    context: str
    reply: str
    user_id: int | None
    chat_id: int | None
    created_at: datetime


_COLUMNS = (
    TaughtPair.id,
    TaughtPair.context,
    TaughtPair.reply,
    TaughtPair.user_id,
    TaughtPair.chat_id,
    TaughtPair.created_at,
)


def add_taught_pair(
    session: Session,
    context: str,
    reply: str,
    *,
    user_id: int | None = None,
    chat_id: int | None = None,
    created_at: datetime | None = None,
) -> int:
    """Store "when someone says `context`, answer `reply`", taught by `user_id`; its id."""
    return session.execute(
        insert(TaughtPair)
        .values(
            context=check_storable(context, field="context"),
            reply=check_storable(reply, field="reply"),
            user_id=user_id,
            chat_id=chat_id,
            created_at=created_at or utcnow(),
        )
        .returning(TaughtPair.id)
    ).scalar_one()


def list_taught_pairs(
    session: Session,
    *,
    after_id: int | None = None,
    until_id: int | None = None,
    user_id: int | None = None,
    limit: int | None = None,
) -> list[Taught]:
    """Taught pairs in the order they were taught, optionally within an id range or by a user."""
    conditions: list[ColumnElement[bool]] = []
    if after_id is not None:
        conditions.append(TaughtPair.id > after_id)
    if until_id is not None:
        conditions.append(TaughtPair.id <= until_id)
    if user_id is not None:
        conditions.append(TaughtPair.user_id == user_id)
    query = select(*_COLUMNS).where(*conditions).order_by(TaughtPair.id)
    if limit is not None:
        query = query.limit(limit)
    return [Taught(*row) for row in session.execute(query)]


def delete_taught_pair(session: Session, pair_id: int) -> bool:
    """Remove a pair (an admin undoing bad teaching); False if it did not exist."""
    return execute_dml(session, delete(TaughtPair).where(TaughtPair.id == pair_id)) > 0
