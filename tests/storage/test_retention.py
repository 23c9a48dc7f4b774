"""Retention: off by default; when on, only messages older than N days go."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from config import StorageSettings
from storage import feedback, retention
from storage.conversations import ChatRef, UserRef, save_exchange, save_turn
from storage.database import Database
from storage.tables import Feedback, Message, utcnow

CHAT = ChatRef("console", "c")
USER = UserRef("console", "u")


def _seed(db: Database) -> tuple[int, int]:
    now = utcnow()
    with db.begin() as session:
        old = save_exchange(
            session, CHAT, USER, "old", "old reply", turn_created_at=now - timedelta(days=40)
        )
        session.execute(
            update(Message)
            .where(Message.id == old.reply_id)
            .values(created_at=now - timedelta(days=40))
        )
        feedback.set_feedback(session, old.reply_id, old.user_id, 1)
        recent = save_turn(
            session,
            chat_id=old.chat_id,
            user_id=old.user_id,
            text="recent, answering the old one",
            reply_to_id=old.turn_id,
            created_at=now - timedelta(days=2),
        )
    return old.turn_id, recent


def test_retention_is_off_by_default(database: Database) -> None:
    _seed(database)
    assert StorageSettings().retention_days is None
    with database.begin() as session:
        assert retention.apply_retention(session, StorageSettings().retention_days) == 0
        assert len(session.execute(select(Message.id)).all()) == 3


def test_only_messages_older_than_the_limit_are_deleted(database: Database) -> None:
    _, recent = _seed(database)
    with database.begin() as session:
        assert retention.apply_retention(session, 30) == 2
    with database.session() as session:
        rows = session.execute(select(Message.id, Message.reply_to_id)).all()
        assert rows == [(recent, None)]  # the reply link is cut, the text kept
        assert session.execute(select(Feedback.id)).all() == []  # went with its message


def test_negative_retention_is_a_mistake(database: Database) -> None:
    with pytest.raises(ValueError), database.begin() as session:
        retention.apply_retention(session, -1)
