"""Taught pairs: stored exactly, listed in order, removable."""

from __future__ import annotations

import pytest

from storage import teaching
from storage.conversations import UserRef, get_or_create_user
from storage.database import Database
from storage.errors import InvalidTextError


def test_taught_pairs_are_listed_in_order_and_by_teacher(database: Database) -> None:
    with database.begin() as session:
        alice = get_or_create_user(session, UserRef("console", "alice"))
        first = teaching.add_taught_pair(session, "hi 👋", "hello! שלום", user_id=alice)
        second = teaching.add_taught_pair(session, "bye", "see you")
    with database.session() as session:
        pairs = teaching.list_taught_pairs(session)
        assert [(p.context, p.reply, p.user_id) for p in pairs] == [
            ("hi 👋", "hello! שלום", alice),
            ("bye", "see you", None),
        ]
        assert [p.id for p in teaching.list_taught_pairs(session, after_id=first)] == [second]
        assert [p.id for p in teaching.list_taught_pairs(session, until_id=first)] == [first]
        assert [p.id for p in teaching.list_taught_pairs(session, user_id=alice)] == [first]
        assert pairs[0].created_at.tzinfo is not None
    with database.begin() as session:
        assert teaching.delete_taught_pair(session, first)
        assert not teaching.delete_taught_pair(session, first)
        assert [p.id for p in teaching.list_taught_pairs(session)] == [second]


def test_taught_text_with_nul_is_refused(database: Database) -> None:
    with pytest.raises(InvalidTextError, match="reply contains a NUL"), database.begin() as s:
        teaching.add_taught_pair(s, "ok", "bad\x00")
