"""Context starts: a /reset is a row in the database, read back by any session (any replica)."""

from __future__ import annotations

from sqlalchemy import delete

from storage import context_starts
from storage.context_starts import NO_RESET
from storage.conversations import ChatRef, SavedExchange, UserRef, get_or_create_chat, save_exchange
from storage.database import Database
from storage.tables import Chat


def _exchange(database: Database, chat: str = "c") -> SavedExchange:
    with database.begin() as session:
        return save_exchange(session, ChatRef("console", chat), UserRef("console", "u"), "q", "a")


def test_a_chat_never_reset_starts_at_its_first_message(database: Database) -> None:
    saved = _exchange(database)
    assert database.read(context_starts.context_start, saved.chat_id) == NO_RESET
    assert database.read(context_starts.context_start, saved.chat_id + 1) == NO_RESET  # no chat


def test_a_reset_starts_the_context_after_the_chats_newest_message(database: Database) -> None:
    _exchange(database, "c")
    newest = _exchange(database, "c")
    _exchange(database, "other")  # a later message of another chat does not count
    with database.begin() as session:
        assert context_starts.reset_context(session, newest.chat_id) == newest.reply_id
    assert database.read(context_starts.context_start, newest.chat_id) == newest.reply_id

    later = _exchange(database, "c")
    with database.begin() as session:  # a second reset moves the start on
        assert context_starts.reset_context(session, later.chat_id) == later.reply_id
    assert database.read(context_starts.context_start, later.chat_id) == later.reply_id


def test_a_chat_without_messages_resets_to_its_beginning(database: Database) -> None:
    with database.begin() as session:
        chat_id = get_or_create_chat(session, ChatRef("console", "empty"))
    with database.begin() as session:
        assert context_starts.reset_context(session, chat_id) == NO_RESET
    assert database.read(context_starts.context_start, chat_id) == NO_RESET


def test_deleting_a_chat_deletes_its_context_start(database: Database) -> None:
    saved = _exchange(database)
    with database.begin() as session:
        context_starts.reset_context(session, saved.chat_id)
    with database.begin() as session:
        session.execute(delete(Chat).where(Chat.id == saved.chat_id))
    with database.begin() as session:  # the id may come back (SQLite): no stale start with it
        session.add(Chat(id=saved.chat_id, platform="console", external_id="new", kind="private"))
    assert database.read(context_starts.context_start, saved.chat_id) == NO_RESET


def test_the_context_is_the_last_k_messages_after_the_start(database: Database) -> None:
    first = _exchange(database, "c")
    _exchange(database, "c")  # q, a, q, a
    _exchange(database, "other")
    assert database.read(context_starts.context_texts, first.chat_id, 3) == ["a", "q", "a"]
    assert database.read(context_starts.context_texts, first.chat_id, 0) == []
    with database.begin() as session:
        context_starts.reset_context(session, first.chat_id)
    assert database.read(context_starts.context_texts, first.chat_id, 3) == []
    with database.begin() as session:
        save_exchange(session, ChatRef("console", "c"), UserRef("console", "u"), "new", "reply")
    assert database.read(context_starts.context_texts, first.chat_id, 3) == ["new", "reply"]
    assert database.read(context_starts.context_texts, first.chat_id, 1) == ["reply"]
