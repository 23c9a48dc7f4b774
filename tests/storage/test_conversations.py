"""Saving and reading turns: transactions, concurrency, and texts that must survive exactly."""

from __future__ import annotations

import threading
from collections import defaultdict

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from storage import conversations
from storage.conversations import ChatRef, UserRef, save_exchange
from storage.database import Database
from storage.errors import InvalidTextError, NotFoundError
from storage.tables import Chat, Message, User

ALICE = UserRef("telegram", 1001, "Alice")
BOB = UserRef("telegram", 1002, "Bob")
PRIVATE = ChatRef("telegram", 1001, "private")
GROUP = ChatRef("telegram", -500, "group", "Friends")


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_an_exchange_stores_the_turn_and_the_reply_linked(database: Database) -> None:
    with database.begin() as session:
        saved = save_exchange(
            session,
            PRIVATE,
            ALICE,
            "hello",
            "hi there",
            model_version="v3",
            latency_ms=12.5,
            turn_external_id=77,
            reply_external_id=78,
        )
    with database.session() as session:
        turn = conversations.get_turn(session, saved.turn_id)
        reply = conversations.get_turn(session, saved.reply_id)
    assert turn is not None and reply is not None
    assert (turn.text, turn.from_bot, turn.user_id, turn.external_id) == (
        "hello",
        False,
        saved.user_id,
        "77",
    )
    assert (reply.text, reply.from_bot, reply.user_id, reply.reply_to_id) == (
        "hi there",
        True,
        None,
        saved.turn_id,
    )
    assert (reply.model_version, reply.latency_ms) == ("v3", 12.5)
    assert turn.chat_id == reply.chat_id == saved.chat_id
    assert reply.created_at >= turn.created_at


def test_users_and_chats_are_created_once_and_names_follow_changes(database: Database) -> None:
    with database.begin() as session:
        first = conversations.get_or_create_user(session, ALICE)
        again = conversations.get_or_create_user(session, UserRef("telegram", "1001", "Alicia"))
        chat = conversations.get_or_create_chat(session, GROUP)
        chat_again = conversations.get_or_create_chat(session, GROUP)
    assert first == again and chat == chat_again
    with database.session() as session:
        assert session.get_one(User, first).display_name == "Alicia"
        assert session.get_one(Chat, chat).kind == "group"
        assert conversations.find_user(session, "telegram", 1001) == first
        assert conversations.find_chat(session, "telegram", -500) == chat
        assert conversations.find_user(session, "console", 1001) is None


def test_unknown_platforms_and_chat_kinds_are_refused(database: Database) -> None:
    with pytest.raises(ValueError), database.begin() as session:
        conversations.get_or_create_user(session, UserRef("irc", 1))
    with pytest.raises(ValueError), database.begin() as session:
        conversations.get_or_create_chat(session, ChatRef("console", 1, "channel"))


def test_recent_context_is_the_last_k_turns_oldest_first(database: Database) -> None:
    with database.begin() as session:
        for i in range(5):
            saved = save_exchange(session, PRIVATE, ALICE, f"q{i}", f"a{i}")
    with database.session() as session:
        context = conversations.recent_context(session, saved.chat_id, 3)
        assert [turn.text for turn in context] == ["a3", "q4", "a4"]
        assert conversations.recent_context(session, saved.chat_id, 0) == []
        everything = conversations.chat_history(session, saved.chat_id)
        assert [t.text for t in everything] == [x for i in range(5) for x in (f"q{i}", f"a{i}")]
        after = conversations.chat_history(session, saved.chat_id, after_id=everything[6].id)
        assert [t.text for t in after] == ["a3", "q4", "a4"]
        assert len(conversations.chat_history(session, saved.chat_id, limit=4)) == 4


def test_platform_message_ids_map_back_to_our_messages(database: Database) -> None:
    with database.begin() as session:
        saved = save_exchange(session, PRIVATE, ALICE, "hello", "hi", turn_external_id=10)
        conversations.set_external_id(session, saved.reply_id, 11)
    with database.session() as session:
        found = conversations.find_turn_by_external_id(session, saved.chat_id, "11")
        assert found is not None and found.id == saved.reply_id
        assert conversations.find_turn_by_external_id(session, saved.chat_id, 12) is None
    with pytest.raises(NotFoundError), database.begin() as session:
        conversations.set_external_id(session, 999_999, 1)


@pytest.mark.parametrize("failure", ["reply_rejected_by_database", "crash_after_both_inserts"])
def test_a_failure_midway_leaves_neither_turn_nor_reply(database: Database, failure: str) -> None:
    with database.begin() as session:
        save_exchange(session, PRIVATE, ALICE, "before", "ok", reply_external_id="taken")
    before = (_count(database, Message), _count(database, User), _count(database, Chat))

    newcomer = UserRef("telegram", 3003, "New")  # created inside the failing transaction
    with pytest.raises((IntegrityError, RuntimeError)), database.begin() as session:
        if failure == "reply_rejected_by_database":
            # The reply collides with an existing platform id: the turn is already written.
            save_exchange(session, PRIVATE, newcomer, "lost", "lost", reply_external_id="taken")
        else:
            save_exchange(session, PRIVATE, newcomer, "lost turn", "lost reply")
            raise RuntimeError("the process dies before the commit")

    assert (_count(database, Message), _count(database, User), _count(database, Chat)) == before
    with database.begin() as session:
        save_exchange(session, PRIVATE, ALICE, "after", "works")
    with database.session() as session:
        chat_id = conversations.find_chat(session, "telegram", 1001)
        assert chat_id is not None
        texts = [t.text for t in conversations.chat_history(session, chat_id)]
        assert conversations.find_user(session, "telegram", 3003) is None
    assert texts == ["before", "ok", "after", "works"]


def test_turns_and_replies_can_be_saved_separately(database: Database) -> None:
    """The bot stores the incoming turn first (it is part of the context), the reply later."""
    with database.begin() as session:
        chat_id = conversations.get_or_create_chat(session, PRIVATE)
        user_id = conversations.get_or_create_user(session, ALICE)
        turn_id = conversations.save_turn(
            session, chat_id=chat_id, user_id=user_id, text="hi", external_id=5
        )
    with database.begin() as session:
        reply_id = conversations.save_reply(
            session, chat_id=chat_id, text="hello", reply_to_id=turn_id, model_version="v1"
        )
    with database.session() as session:
        turns = conversations.chat_history(session, chat_id)
    assert [(t.id, t.from_bot, t.reply_to_id) for t in turns] == [
        (turn_id, False, None),
        (reply_id, True, turn_id),
    ]


WRITERS = 20
TURNS = 100


@pytest.mark.slow  # 20 threads writing
def test_twenty_concurrent_writers_lose_nothing_and_keep_order(database: Database) -> None:
    """Writers 0-9 each have a private chat; writers 10-19 share one new group chat, so they
    also race to create it."""
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            chat = ChatRef("telegram", f"private-{w}") if w < 10 else GROUP
            user = UserRef("telegram", f"user-{w}", f"Writer {w}")
            start.wait()
            for i in range(TURNS):
                with database.begin() as session:
                    save_exchange(session, chat, user, f"w{w} t{i}", f"w{w} r{i}")
        except BaseException as exc:  # reported below; a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    with database.session() as session:
        rows = session.execute(
            select(Message.id, Message.chat_id, Message.text, Message.reply_to_id).order_by(
                Message.id
            )
        ).all()
        chats = session.execute(select(func.count()).select_from(Chat)).scalar_one()
        users = session.execute(select(func.count()).select_from(User)).scalar_one()
    assert len(rows) == WRITERS * TURNS * 2 == 4000
    assert len({row.text for row in rows}) == 4000  # no duplicates
    assert (chats, users) == (11, WRITERS)

    by_writer: dict[int, list[str]] = defaultdict(list)
    chat_of_writer: dict[int, set[int]] = defaultdict(set)
    text_by_id = {row.id: row.text for row in rows}
    for row in rows:  # ids ascending = the order of each chat
        w = int(row.text.split()[0][1:])
        by_writer[w].append(row.text.split()[1])
        chat_of_writer[w].add(row.chat_id)
        if row.reply_to_id is not None:
            assert text_by_id[row.reply_to_id] == row.text.replace(" r", " t")
    for w in range(WRITERS):
        assert by_writer[w] == [x for i in range(TURNS) for x in (f"t{i}", f"r{i}")]
        assert len(chat_of_writer[w]) == 1
    assert len({next(iter(chat_of_writer[w])) for w in range(10, WRITERS)}) == 1


TRICKY_TEXTS = {
    "emoji": "😀👍🏽👨‍👩‍👧‍👦🇺🇦 ok",
    "rtl": "مرحبا بالعالم — שלום עולם",
    "combining": "e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0352\u0357",
    "long": ("abcdefghij" * 410)[:4096],
    "long_emoji": "🙂" * 4096,
    "control": "tab\tnew\nline\r\nbell\x07 esc\x1b del\x7f \x01\x1f",
    "invisible": "zero\u200bwidth \ufeffbom \u2028line sep \u202eoverride",
    "astral": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈",
    "whitespace": "  leading and trailing  ",
}


@pytest.mark.parametrize("name", sorted(TRICKY_TEXTS))
def test_texts_round_trip_exactly(database: Database, name: str) -> None:
    text = TRICKY_TEXTS[name]
    with database.begin() as session:
        saved = save_exchange(session, PRIVATE, UserRef("telegram", 1001, text[:50]), text, text)
    with database.session() as session:
        turn = conversations.get_turn(session, saved.turn_id)
        reply = conversations.get_turn(session, saved.reply_id)
    assert turn is not None and reply is not None
    assert turn.text == text and reply.text == text
    assert len(turn.text) == len(text)


@pytest.mark.parametrize(
    ("text", "reply", "message"),
    [
        ("nul\x00inside", "fine", "NUL character"),
        ("fine", "\x00", "NUL character"),
        ("lone \ud800 surrogate", "fine", "lone surrogate"),
    ],
)
def test_unstorable_texts_are_refused_clearly_and_nothing_is_written(
    database: Database, text: str, reply: str, message: str
) -> None:
    with pytest.raises(InvalidTextError, match=message), database.begin() as session:
        save_exchange(session, PRIVATE, ALICE, text, reply)
    assert _count(database, Message) == 0
    with database.begin() as session:
        save_exchange(session, PRIVATE, ALICE, "still", "works")
    assert _count(database, Message) == 2
