"""Chat logs -> training pairs: which pairs are kept, masked, dropped and collapsed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from bot.retraining.blocklist import Blocklist
from bot.retraining.pairs import HUMAN, TAUGHT, UPVOTED, LogPairs, training_pairs_from_logs
from nlp.text import TextProcessor
from storage import feedback, privacy, teaching, training_runs
from storage.conversations import (
    ChatRef,
    UserRef,
    get_or_create_chat,
    get_or_create_user,
    save_exchange,
    save_turn,
)
from storage.database import Database
from storage.tables import utcnow

ANN, BOB, CAROL, DAVE, EVE = (UserRef("telegram", i, n) for i, n in enumerate("ABCDE", 1))
PRIVATE = ChatRef("telegram", 1, "private")
PROCESSOR = TextProcessor()
BLOCKLIST = Blocklist.of([["bastard"], ["kill", "yourself"]])


@dataclass
class Ids:
    carol: int
    dave: int


def _say(session: Session, chat: ChatRef, user: UserRef, text: str) -> int:
    return save_turn(
        session,
        chat_id=get_or_create_chat(session, chat),
        user_id=get_or_create_user(session, user),
        text=text,
    )


def _group(n: int) -> ChatRef:
    return ChatRef("telegram", -n, "group")


def _pairs(db: Database, since: training_runs.RunInfo | None = None) -> LogPairs:
    return db.read(
        training_pairs_from_logs,
        since,
        PROCESSOR,
        BLOCKLIST,
        settle=timedelta(0),
        now=utcnow() + timedelta(seconds=1),
    )


def _shown(pairs: LogPairs) -> list[tuple[str, str, str]]:
    return [(p.context_text, p.reply_text, p.kind) for p in pairs.pairs]


@pytest.fixture
def ids(database: Database) -> Ids:
    with database.begin() as s:
        ann, bob, eve = (get_or_create_user(s, u) for u in (ANN, BOB, EVE))
        carol, dave = get_or_create_user(s, CAROL), get_or_create_user(s, DAVE)
        privacy.set_opted_out(s, carol)
        # Private chat: a bot reply with 👍 is kept; one without a vote never is, nor one that
        # got a 👎 as well as 👍s. Ann answering the bot is a human follow-up.
        upvoted = save_exchange(s, PRIVATE, ANN, "Hello", "Hi there!")
        feedback.set_feedback(s, upvoted.reply_id, ann, 1)
        save_exchange(s, PRIVATE, ANN, "what is your mail?", "Ask me later.")
        _say(s, PRIVATE, ANN, "Mail ann@example.com or see https://ann.example.org/x")
        disputed = save_exchange(s, PRIVATE, BOB, "how old are you?", "I am 3 years old.")
        for user, vote in ((ann, 1), (bob, 1), (eve, -1)):
            feedback.set_feedback(s, disputed.reply_id, user, vote)
        # Groups: people answering each other.
        _say(s, _group(1), ANN, "Call me at +1-555-0100?")
        _say(s, _group(1), BOB, "Sure, at 10.")
        _say(s, _group(2), ANN, "you are a bastard")
        _say(s, _group(2), BOB, "that was rude")
        _say(s, _group(3), BOB, "tell me a secret")
        _say(s, _group(3), CAROL, "carol's secret")
        _say(s, _group(3), ANN, "nice one carol")
        _say(s, _group(4), DAVE, "dave's private story")
        _say(s, _group(4), EVE, "what a story, dave")
        teaching.add_taught_pair(s, "Favourite colour?", "Blue like the sky.", user_id=ann)
        teaching.add_taught_pair(s, "carol's question", "carol's answer", user_id=carol)
    return Ids(carol, dave)


def test_human_follow_ups_taught_pairs_and_upvoted_replies_only(
    database: Database,
    ids: Ids,
) -> None:
    pairs = _pairs(database)
    assert _shown(pairs) == [
        ("favourite colour ?", "blue like the sky .", TAUGHT),
        ("hello", "hi there !", UPVOTED),
        ("hi there !", "what is your mail ?", HUMAN),
        ("ask me later .", "mail <email> or see <url>", HUMAN),
        ("mail <email> or see <url>", "how old are you ?", HUMAN),  # Bob answering Ann
        ("call me at <num> ?", "sure , at <num> .", HUMAN),
        ("dave 's private story", "what a story , dave", HUMAN),
    ]
    assert pairs.kinds == {TAUGHT: 1, UPVOTED: 1, HUMAN: 5}
    assert pairs.dropped == {"downvoted": 1, "blocklisted": 1}


def test_bot_replies_are_excluded_unless_upvoted_without_a_downvote(
    database: Database,
    ids: Ids,
) -> None:
    replies = {p.reply_text for p in _pairs(database).pairs}
    assert "hi there !" in replies
    assert "ask me later ." not in replies  # never rated
    assert "i am <num> years old ." not in replies  # 👍👍 but also 👎


def test_opted_out_and_forgotten_users_are_excluded(
    database: Database,
    ids: Ids,
) -> None:
    with database.begin() as s:
        privacy.forget_user(s, ids.dave)
    text = " ".join(f"{p.context_text} {p.reply_text}" for p in _pairs(database).pairs)
    assert "carol" not in text  # her messages, and what answered them, and what she taught
    assert "dave" not in text
    with database.begin() as s:
        privacy.set_opted_out(s, ids.carol, False)
    assert ("tell me a secret", "carol 's secret", HUMAN) in _shown(_pairs(database))


def test_blocklisted_pairs_are_dropped_and_counted(
    database: Database,
    ids: Ids,
) -> None:
    pairs = _pairs(database)
    assert all("bastard" not in p.context_text and "rude" not in p.reply_text for p in pairs.pairs)
    assert pairs.dropped["blocklisted"] == 1


def test_emails_urls_and_numbers_are_masked(database: Database, ids: Ids) -> None:
    text = " ".join(f"{p.context_text} {p.reply_text}" for p in _pairs(database).pairs)
    for secret in ("ann@example.com", "example.org", "555", "0100", "10"):
        assert secret not in text
    assert "<email>" in text and "<url>" in text and "<num>" in text


def test_exact_duplicates_after_masking_are_collapsed(database: Database) -> None:
    with database.begin() as s:
        for n, number in ((1, "555-0100"), (2, "555-0199"), (3, "555-0100")):
            _say(s, _group(n), ANN, f"call me at {number}")
            _say(s, _group(n), BOB, "Sure!")
    pairs = _pairs(database)
    assert _shown(pairs) == [("call me at <num>", "sure !", HUMAN)]
    assert pairs.dropped == {"duplicate": 2}


def test_only_pairs_after_the_last_runs_watermarks_are_new(
    database: Database,
    ids: Ids,
) -> None:
    first = _pairs(database)
    with database.begin() as s:
        run = training_runs.start_run(s)
        run = training_runs.finish_run(
            s,
            run.id,
            last_message_id=first.last_message_id,
            last_taught_pair_id=first.last_taught_pair_id,
        )
        _say(s, _group(9), ANN, "anything new?")
        _say(s, _group(9), BOB, "a new pattern!")
    assert _shown(_pairs(database, run)) == [("anything new ?", "a new pattern !", HUMAN)]
