"""Who wrote what: the authors of stored messages and taught pairs.

For the rules that count people rather than uses: at retraining, a word joins a model's
vocabulary only when enough different people wrote it (`bot.retraining.pairs`).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.in_lists import in_chunks
from storage.tables import Message, TaughtPair


def message_authors(session: Session, ids: Collection[int]) -> dict[int, int | None]:
    """Message id -> the user who wrote it (None: the bot). Ids not stored are left out."""
    wanted = sorted(set(ids))
    authors: dict[int, int | None] = {}
    for chunk in in_chunks(wanted):
        rows = session.execute(select(Message.id, Message.user_id).where(Message.id.in_(chunk)))
        authors.update((row.id, row.user_id) for row in rows)
    return authors


def teachers(session: Session, ids: Collection[int]) -> dict[int, int | None]:
    """Taught pair id -> the user who taught it (None: taught from the command line)."""
    wanted = sorted(set(ids))
    found: dict[int, int | None] = {}
    for chunk in in_chunks(wanted):
        rows = session.execute(
            select(TaughtPair.id, TaughtPair.user_id).where(TaughtPair.id.in_(chunk))
        )
        found.update((row.id, row.user_id) for row in rows)
    return found
