"""Exports: the training pairs retraining reads (conversation exports: tests/export/)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from storage import exports, feedback, privacy, teaching, training_runs
from storage.conversations import (
    ChatRef,
    UserRef,
    find_chat,
    find_user,
    get_or_create_chat,
    get_or_create_user,
    save_exchange,
    save_turn,
)
from storage.database import Database
from storage.exports import export_chat_pairs
from storage.tables import utcnow

PRIVATE = ChatRef("telegram", 1, "private")
GROUP = ChatRef("telegram", -9, "group")
ALICE = UserRef("telegram", 1, "Alice")
BOB = UserRef("telegram", 2, "Bob")
CAROL = UserRef("telegram", 3, "Carol")


@dataclass
class Seeded:
    alice: int
    bob: int
    group: int
    first_group_message: int


def _say(
    session: Session, chat: ChatRef, user: UserRef, text: str, reply_to: int | None = None
) -> int:
    return save_turn(
        session,
        chat_id=get_or_create_chat(session, chat),
        user_id=get_or_create_user(session, user),
        text=text,
        reply_to_id=reply_to,
    )


@pytest.fixture
def seeded(database: Database) -> Seeded:
    with database.begin() as session:
        r1 = save_exchange(session, PRIVATE, ALICE, "hi", "hello")
        feedback.set_feedback(session, r1.reply_id, r1.user_id, 1)
        save_exchange(session, PRIVATE, ALICE, "how are you", "fine")
        r3 = save_exchange(session, PRIVATE, ALICE, "great", "ok")
        feedback.set_feedback(session, r3.reply_id, r3.user_id, -1)

        g1 = _say(session, GROUP, ALICE, "anyone here?")
        _say(session, GROUP, BOB, "yes!")
        _say(session, GROUP, BOB, "me too")  # Bob continuing himself: not a reply
        carol = get_or_create_user(session, CAROL)
        privacy.set_opted_out(session, carol)
        _say(session, GROUP, CAROL, "hello all")  # opted out: never exported
        _say(session, GROUP, ALICE, "hi carol")  # answers Carol: not exported either
        _say(session, GROUP, BOB, "re: anyone", reply_to=g1)  # answers g1, not "hi carol"
        _say(session, GROUP, BOB, "x")  # same sender as the previous turn: skipped
    with database.session() as session:
        bob = find_user(session, "telegram", 2)
        group = find_chat(session, "telegram", -9)
    assert bob is not None and group is not None
    return Seeded(r1.user_id, bob, group, g1)


def _export(database: Database, **ranges: Any) -> exports.ChatPairs:
    with database.session() as session:
        return export_chat_pairs(session, **ranges)


def _pairs(database: Database, **ranges: Any) -> list[tuple[tuple[str, ...], str]]:
    return [(p.context, p.reply) for p in _export(database, **ranges).pairs]


def test_default_pairs_are_human_replies_and_upvoted_bot_replies(
    database: Database, seeded: Seeded
) -> None:
    assert _pairs(database) == [
        (("hi",), "hello"),  # upvoted bot reply
        (("hello",), "how are you"),  # a human following up the bot
        (("fine",), "great"),
        (("anyone here?",), "yes!"),
        (("anyone here?",), "re: anyone"),  # the explicit reply wins over the previous turn
    ]


def test_pairs_carry_their_metadata(database: Database, seeded: Seeded) -> None:
    first = _export(database).pairs[0]
    assert first.source == "chat" and first.reply_from_bot and first.score == 1
    assert first.context_text == "hi" and len(first.context_message_ids) == 1
    assert first.reply_message_id is not None
    assert first.reply_message_id > first.context_message_ids[0]


def test_a_bot_reply_needs_a_thumbs_up_and_no_thumbs_down(
    database: Database, seeded: Seeded
) -> None:
    with database.begin() as session:
        disputed = save_exchange(session, PRIVATE, ALICE, "sure?", "quite sure")
        feedback.set_feedback(session, disputed.reply_id, disputed.user_id, 1)
        feedback.set_feedback(session, disputed.reply_id, get_or_create_user(session, BOB), 1)
        feedback.set_feedback(session, disputed.reply_id, get_or_create_user(session, CAROL), -1)
    export = _export(database)
    bot_replies = [p.reply for p in export.pairs if p.reply_from_bot]
    assert bot_replies == ["hello"]  # not "fine" (no vote), "ok" (👎), "quite sure" (👍👍👎)
    assert export.downvoted == 1  # "quite sure": a 👍 but also a 👎


def test_longer_contexts_grow_back_from_the_answered_turn(
    database: Database, seeded: Seeded
) -> None:
    assert _pairs(database, context_turns=2) == [
        (("hi",), "hello"),  # nothing before the first turn of the chat
        (("hi", "hello"), "how are you"),
        (("how are you", "fine"), "great"),
        (("anyone here?",), "yes!"),
        (("anyone here?",), "re: anyone"),  # context grows back from the answered turn
    ]


def test_opted_out_users_and_people_continuing_themselves_make_no_pairs(
    database: Database, seeded: Seeded
) -> None:
    pairs = _pairs(database)
    assert not any("hello all" in c or r == "hello all" for c, r in pairs)
    assert (("yes!",), "me too") not in pairs and (("re: anyone",), "x") not in pairs


def test_reply_id_ranges(database: Database, seeded: Seeded) -> None:
    after = _pairs(database, after_message_id=seeded.first_group_message)
    assert [r for _, r in after] == ["yes!", "re: anyone"]
    assert _pairs(database, until_message_id=seeded.first_group_message)[-1] == (
        ("fine",),
        "great",
    )


def test_export_since_a_run_returns_only_new_pairs_and_the_next_watermarks(
    database: Database,
) -> None:
    later = utcnow() + timedelta(seconds=1)
    with database.begin() as session:
        save_exchange(session, PRIVATE, ALICE, "one", "1")
        save_exchange(session, PRIVATE, ALICE, "two", "2")
        teaching.add_taught_pair(session, "taught q", "taught a")
    with database.session() as session:
        first = exports.export_since_run(session, None, settle=timedelta(0), now=later)
    assert [(p.context, p.reply) for p in first.chat_pairs] == [(("1",), "two")]
    assert [(p.context, p.reply, p.source) for p in first.taught_pairs] == [
        (("taught q",), "taught a", "taught")
    ]
    assert [p.source for p in first.pairs] == ["taught", "chat"]
    with database.begin() as session:
        run = training_runs.start_run(session)
        run = training_runs.finish_run(
            session,
            run.id,
            last_message_id=first.last_message_id,
            last_taught_pair_id=first.last_taught_pair_id,
        )
        save_exchange(session, PRIVATE, ALICE, "three", "3")
    with database.session() as session:
        unsettled = exports.export_since_run(session, run, now=utcnow())
        second = exports.export_since_run(
            session, run, settle=timedelta(0), now=utcnow() + timedelta(seconds=1)
        )
    # Messages younger than `settle` wait for the next run, and the watermark does not pass them.
    assert unsettled.chat_pairs == [] and unsettled.last_message_id == first.last_message_id
    assert [(p.context, p.reply) for p in second.chat_pairs] == [(("2",), "three")]
    assert second.taught_pairs == []
    assert second.last_message_id is not None and first.last_message_id is not None
    assert second.last_message_id > first.last_message_id
    assert second.last_taught_pair_id == first.last_taught_pair_id
