"""Forgetting a user removes every row of theirs and nothing of anyone else's."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import or_, select

from storage import feedback, outbox, privacy, teaching
from storage.conversations import ChatRef, UserRef, save_exchange, save_turn
from storage.database import Database
from storage.errors import NotFoundError
from storage.exports import ConversationQuery, conversation_subject_known, iter_conversations
from storage.handled_commands import claim_command
from storage.outbox import OutgoingMessage
from storage.tables import Chat, Feedback, HandledCommand, Message, OutboxMessage, TaughtPair, User

GROUP = ChatRef("telegram", -42, "group", "Book club")
ALICE = UserRef("telegram", 1, "Alice")
BOB = UserRef("telegram", 2, "Bob")


def _rows(session: Any, model: Any, *conditions: Any) -> list[tuple[Any, ...]]:
    columns = [getattr(model, c.key) for c in model.__table__.columns]
    return [
        tuple(r) for r in session.execute(select(*columns).where(*conditions).order_by(model.id))
    ]


@pytest.fixture
def group_chat(database: Database) -> dict[str, int]:
    """Alice and Bob talk in one group; the bot answers both; they vote on each other's replies."""
    with database.begin() as session:
        a1 = save_exchange(session, GROUP, ALICE, "alice one", "bot to alice one")
        b1 = save_exchange(session, GROUP, BOB, "bob one", "bot to bob one")
        a2 = save_exchange(session, GROUP, ALICE, "alice two", "bot to alice two")
        bob_answers_alice = save_turn(
            session,
            chat_id=a1.chat_id,
            user_id=b1.user_id,
            text="bob: re alice",
            reply_to_id=a2.turn_id,
        )
        feedback.set_feedback(session, a1.reply_id, a1.user_id, 1)  # Alice on her reply
        feedback.set_feedback(session, b1.reply_id, a1.user_id, -1)  # Alice on Bob's reply
        feedback.set_feedback(session, b1.reply_id, b1.user_id, 1)  # Bob on his reply
        feedback.set_feedback(session, a2.reply_id, b1.user_id, 1)  # Bob on Alice's reply
        teaching.add_taught_pair(session, "alice ctx", "alice reply", user_id=a1.user_id)
        teaching.add_taught_pair(
            session, "bob ctx", "bob reply", user_id=b1.user_id, chat_id=a1.chat_id
        )
    return {
        "alice": a1.user_id,
        "bob": b1.user_id,
        "chat": a1.chat_id,
        "bob_answers_alice": bob_answers_alice,
        "bot_to_bob": b1.reply_id,
        "bot_to_alice_two": a2.reply_id,
    }


def test_forgetting_a_user_removes_all_their_rows_and_counts_them(
    database: Database, group_chat: dict[str, int]
) -> None:
    alice = group_chat["alice"]
    with database.begin() as session:
        result = privacy.forget_user(session, alice)
    assert result == privacy.ForgetResult(
        messages=2,
        bot_replies=2,
        feedback=2,
        feedback_on_bot_replies=1,  # Bob's vote on the bot's reply to Alice
        taught_pairs=1,
        users=1,
    )
    assert result.total == 9
    with database.session() as session:
        assert session.get(User, alice) is None
        assert _rows(session, Message, Message.user_id == alice) == []
        texts = [row.text for row in session.execute(select(Message.text))]
        assert not [text for text in texts if "alice" in text and not text.startswith("bob")]
        assert _rows(session, Feedback, Feedback.user_id == alice) == []
        assert _rows(session, TaughtPair, TaughtPair.user_id == alice) == []
        theirs = ConversationQuery(ALICE.platform, user=str(ALICE.external_id))
        assert not conversation_subject_known(session, theirs)
        assert list(iter_conversations(session, theirs)) == []  # their export holds nothing


def test_forgetting_a_user_leaves_another_user_in_the_same_chat_intact(
    database: Database, group_chat: dict[str, int]
) -> None:
    bob, chat = group_chat["bob"], group_chat["chat"]

    def bobs_rows(session: Any) -> dict[str, list[tuple]]:
        return {
            "user": _rows(session, User, User.id == bob),
            "chat": _rows(session, Chat, Chat.id == chat),
            "messages": _rows(
                session,
                Message,
                or_(Message.user_id == bob, Message.id == group_chat["bot_to_bob"]),
            ),
            "feedback": _rows(session, Feedback, Feedback.user_id == bob),
            "taught": _rows(session, TaughtPair, TaughtPair.user_id == bob),
        }

    with database.session() as session:
        before = bobs_rows(session)
    with database.begin() as session:
        privacy.forget_user(session, group_chat["alice"])
    with database.session() as session:
        after = bobs_rows(session)

    # Bob's answer to Alice keeps its text; only the link to her deleted message is cut.
    reply_to = Message.__table__.columns.keys().index("reply_to_id")
    before["messages"] = [
        (*row[:reply_to], None, *row[reply_to + 1 :])
        if row[0] == group_chat["bob_answers_alice"]
        else row
        for row in before["messages"]
    ]
    # Bob's vote on the bot's reply to Alice went with that reply (counted separately).
    message_id = Feedback.__table__.columns.keys().index("message_id")
    before["feedback"] = [
        row for row in before["feedback"] if row[message_id] != group_chat["bot_to_alice_two"]
    ]
    assert after == before
    assert len(after["messages"]) == 3 and len(after["feedback"]) == 1 and len(after["taught"]) == 1


def test_forgetting_an_unknown_user_deletes_nothing(
    database: Database, group_chat: dict[str, int]
) -> None:
    with database.begin() as session:
        assert privacy.forget_user(session, 123_456).total == 0


def test_opting_out_is_recorded(database: Database, group_chat: dict[str, int]) -> None:
    with database.begin() as session:
        assert not privacy.is_opted_out(session, group_chat["bob"])
        privacy.set_opted_out(session, group_chat["bob"])
        assert privacy.is_opted_out(session, group_chat["bob"])
        privacy.set_opted_out(session, group_chat["bob"], False)
        assert not privacy.is_opted_out(session, group_chat["bob"])
    with pytest.raises(NotFoundError), database.begin() as session:
        privacy.set_opted_out(session, 123_456)


def test_forgetting_a_user_removes_their_private_chat_and_what_was_recorded_or_queued_for_it(
    database: Database,
) -> None:
    alices_chat = ChatRef("telegram", 1, "private")  # a private chat is keyed by the person's id
    asks_alice = {"inline_keyboard": [[{"text": "Yes", "callback_data": "forget:yes:1"}]]}
    votes = {"inline_keyboard": [[{"text": "👍", "callback_data": "fb:1:1"}]]}
    with database.begin() as session:
        alice = save_exchange(session, alices_chat, ALICE, "alice private", "bot to alice")
        bob = save_exchange(session, GROUP, BOB, "bob one", "bot to bob")
        claim_command(session, "telegram", 1, 77)  # /help in her chat
        claim_command(session, "telegram", -42, 78)  # someone's command in the group
        outbox.enqueue(session, OutgoingMessage("telegram", 1, "queued for alice"))
        outbox.enqueue(
            session, OutgoingMessage("telegram", -42, "Forget?", reply_markup=asks_alice)
        )
        kept = outbox.enqueue(session, OutgoingMessage("telegram", -42, "hi", reply_markup=votes))

    with database.begin() as session:
        result = privacy.forget_user(session, alice.user_id)

    assert (result.chats, result.handled_commands, result.outbox_messages) == (1, 1, 2)
    with database.session() as session:
        assert session.get(Chat, alice.chat_id) is None
        assert session.get(Chat, bob.chat_id) is not None
        assert _rows(session, Message, Message.chat_id == alice.chat_id) == []
        assert [c.chat_external_id for c in session.scalars(select(HandledCommand))] == ["-42"]
        assert [m.id for m in session.scalars(select(OutboxMessage))] == [kept]
