"""👍/👎: once per user and message, changeable, only on bot messages."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage import feedback
from storage.conversations import (
    ChatRef,
    SavedExchange,
    UserRef,
    get_or_create_user,
    save_exchange,
)
from storage.database import Database
from storage.errors import InvalidFeedbackError, NotFoundError
from storage.tables import Feedback


@pytest.fixture
def exchange(database: Database) -> tuple[SavedExchange, int]:
    with database.begin() as session:
        saved = save_exchange(
            session, ChatRef("telegram", -1, "group"), UserRef("telegram", 1), "q", "a"
        )
        other = get_or_create_user(session, UserRef("telegram", 2))
    return saved, other


def test_a_second_press_changes_the_vote_instead_of_adding_one(
    database: Database, exchange: tuple[SavedExchange, int]
) -> None:
    saved, other = exchange
    with database.begin() as session:
        feedback.set_feedback(session, saved.reply_id, saved.user_id, feedback.UP)
    with database.begin() as session:
        feedback.set_feedback(session, saved.reply_id, saved.user_id, feedback.DOWN)
        feedback.set_feedback(session, saved.reply_id, other, feedback.DOWN)
    with database.session() as session:
        assert feedback.get_feedback(session, saved.reply_id, saved.user_id) == -1
        rows = session.execute(select(func.count()).select_from(Feedback)).scalar_one()
        tally = feedback.feedback_tally(session, saved.reply_id)
    assert rows == 2
    assert (tally.up, tally.down, tally.score) == (0, 2, -2)


def test_a_vote_can_be_withdrawn(database: Database, exchange: tuple[SavedExchange, int]) -> None:
    saved, _ = exchange
    with database.begin() as session:
        feedback.set_feedback(session, saved.reply_id, saved.user_id, 1)
        assert feedback.remove_feedback(session, saved.reply_id, saved.user_id)
        assert not feedback.remove_feedback(session, saved.reply_id, saved.user_id)
        assert feedback.feedback_tally(session, saved.reply_id).score == 0


@pytest.mark.parametrize("value", [0, 2, -2])
def test_only_plus_or_minus_one_is_a_vote(
    database: Database, exchange: tuple[SavedExchange, int], value: int
) -> None:
    saved, _ = exchange
    with pytest.raises(InvalidFeedbackError), database.begin() as session:
        feedback.set_feedback(session, saved.reply_id, saved.user_id, value)


def test_votes_go_on_bot_messages_that_exist(
    database: Database, exchange: tuple[SavedExchange, int]
) -> None:
    saved, _ = exchange
    with pytest.raises(InvalidFeedbackError, match="not a bot message"), database.begin() as s:
        feedback.set_feedback(s, saved.turn_id, saved.user_id, 1)
    with pytest.raises(NotFoundError), database.begin() as session:
        feedback.set_feedback(session, 987_654, saved.user_id, 1)
