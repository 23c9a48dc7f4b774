"""Who wrote what: the authors of stored messages and taught pairs.

For the rules that count people rather than uses: at retraining, a word joins a model's
vocabulary only when enough different people wrote it (`bot.retraining.pairs`).
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from storage.in_lists import in_chunks
from storage.tables import Message, TaughtPair


def message_authors(session: Session, ids: Collection[int]) -> dict[int, int | None]:
    """Message id -> the user who wrote it (None: the bot). Ids not stored are left out."""
    return _owners(session, Message.id, Message.user_id, ids)


def teachers(session: Session, ids: Collection[int]) -> dict[int, int | None]:
    """Taught pair id -> the user who taught it (None: taught from the command line)."""
    return _owners(session, TaughtPair.id, TaughtPair.user_id, ids)


def _owners(
    session: Session,
    id_column: InstrumentedAttribute[int],
    user_column: InstrumentedAttribute[int | None],
    ids: Collection[int],
) -> dict[int, int | None]:
    owners: dict[int, int | None] = {}
    for chunk in in_chunks(sorted(set(ids))):
        rows = session.execute(select(id_column, user_column).where(id_column.in_(chunk)))
        owners.update((row[0], row[1]) for row in rows)
    return owners
