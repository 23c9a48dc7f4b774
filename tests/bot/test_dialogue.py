import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import OperationalError

from bot import answers
from bot.answers import FixedReason
from bot.dialogue import DialogueService, Incoming, ReplyRoute, UserRef
from bot.model_slot import ModelSlot
from config import DialogueSettings, StorageSettings
from nlp.responder import Reply
from storage import conversations, privacy
from storage.database import Database
from storage.faults import is_transient
from storage.tables import Message, OutboxMessage


def _msg(text: str, chat: str = "c1", user: str = "u1", **kw: object) -> Incoming:
    return Incoming("console", chat, user, text, **kw)  # type: ignore[arg-type]


def _messages(db: Database) -> list[tuple[str, bool, str | None]]:
    with db.session() as s:
        rows = s.execute(
            select(Message.text, Message.from_bot, Message.model_version).order_by(Message.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_a_message_gets_a_generated_reply_and_both_turns_are_stored(
    service: DialogueService, db: Database
) -> None:
    answer = await service.respond(_msg("hello", message_id=42))
    assert answer.text == "Hi there!" and answer.generated and answer.fixed_reason is None
    assert answer.model_version == "tiny" and answer.latency_ms > 0
    assert _messages(db) == [("hello", False, None), ("Hi there!", True, "tiny")]
    assert answer.reply_id is not None and answer.turn_id is not None
    with db.session() as s:
        reply = conversations.get_turn(s, answer.reply_id)
        turn = conversations.get_turn(s, answer.turn_id)
    assert reply is not None and turn is not None
    assert reply.reply_to_id == turn.id and turn.external_id == "42"
    assert reply.latency_ms == pytest.approx(answer.latency_ms)


@pytest.mark.parametrize(
    ("text", "expected", "reason"),
    [
        ("x" * 201, answers.TOO_LONG.format(limit=200), FixedReason.TOO_LONG),
        ("😀 !!! ???", answers.NO_WORDS, FixedReason.NO_WORDS),
        ("qwzx plorfy", answers.UNKNOWN_WORDS, FixedReason.UNKNOWN_WORDS),
    ],
)
async def test_bad_input_gets_a_fixed_answer_with_its_reason_and_is_kept(
    service: DialogueService, db: Database, text: str, expected: str, reason: FixedReason
) -> None:
    answer = await service.respond(_msg(text))
    assert answer.text == expected and answer.fixed_reason is reason and not answer.generated
    assert _messages(db) == [(text, False, None), (expected, True, None)]


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00"])
async def test_empty_input_gets_a_fixed_answer_and_nothing_is_stored(
    service: DialogueService, db: Database, text: str
) -> None:
    answer = await service.respond(_msg(text))
    assert answer.text == answers.EMPTY and answer.fixed_reason is FixedReason.EMPTY
    assert not answer.generated
    assert _messages(db) == []


async def test_nul_characters_are_dropped_not_fatal(service: DialogueService, db: Database) -> None:
    answer = await service.respond(_msg("hel\x00lo"))
    assert answer.text == "Hi there!"
    assert _messages(db)[0][0] == "hello"


async def test_messages_of_one_chat_are_stored_in_order(
    service: DialogueService, db: Database
) -> None:
    texts = ["hello", "how are you?", "bye", "thank you", "good night", "who made you?"]
    await asyncio.gather(*(service.respond(_msg(t)) for t in texts))
    stored = [text for text, from_bot, _ in _messages(db) if not from_bot]
    assert stored == texts
    assert [from_bot for _, from_bot, _ in _messages(db)] == [False, True] * len(texts)


async def test_many_chats_are_answered_in_shared_batches(
    service: DialogueService, db: Database
) -> None:
    seen: list[int] = []
    generate = service.batcher._decode

    async def spy(batch):
        seen.append(len(batch))
        await generate(batch)

    service.batcher._decode = spy  # type: ignore[method-assign]
    replies = await asyncio.gather(
        *(service.respond(_msg("how are you?", chat=f"chat{i}")) for i in range(16))
    )
    assert {r.text for r in replies} == {"I am fine, thanks."}
    assert max(seen) > 1 and sum(seen) == 16
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Message)) == 32


async def test_context_is_the_recent_turns_since_the_last_reset(
    service: DialogueService,
) -> None:
    contexts: list[list[str]] = []
    generate = service.batcher.generate

    async def spy(context):
        contexts.append(list(context))
        return await generate(context)

    service.batcher.generate = spy  # type: ignore[method-assign]
    await service.respond(_msg("hello"))
    await service.respond(_msg("how are you?"))
    await service.reset("console", "c1")
    await service.respond(_msg("bye"))
    assert contexts == [["hello"], ["hello", "Hi there!", "how are you?"], ["bye"]]


async def test_a_failing_model_gets_an_apology_and_the_message_is_kept(
    db: Database, models: ModelSlot
) -> None:
    def broken(*args: object, **kwargs: object) -> list[Reply]:
        raise RuntimeError("decoder on fire")

    models.current().responder.generate = broken  # type: ignore[method-assign]
    service = DialogueService(db, models, DialogueSettings())
    try:
        answer = await service.respond(_msg("hello"))
        assert answer.text == answers.APOLOGY and not answer.generated
        assert answer.fixed_reason is FixedReason.MODEL_ERROR
        assert _messages(db) == [("hello", False, None)]
    finally:
        await service.close()


async def test_group_messages_can_be_recorded_without_an_answer(
    service: DialogueService, db: Database
) -> None:
    assert await service.record(_msg("just chatting", chat_kind="group")) is not None
    assert await service.record(_msg("   ")) is None
    assert _messages(db) == [("just chatting", False, None)]


async def test_forget_removes_the_users_rows_only(service: DialogueService, db: Database) -> None:
    await service.respond(_msg("hello", chat="g", user="alice", chat_kind="group"))
    await service.respond(_msg("bye", chat="g", user="bob", chat_kind="group"))
    result = await service.forget("console", "alice")
    assert result is not None and result.messages >= 1
    assert [t for t, _, _ in _messages(db)] == ["bye", "Goodbye, see you soon!"]
    assert await service.forget("console", "nobody") is None


async def test_a_message_delivered_twice_is_stored_and_answered_once(
    service: DialogueService, db: Database
) -> None:
    first = await service.respond(_msg("hello", message_id=7))
    again = await service.respond(_msg("hello", message_id=7))
    assert first.text == "Hi there!" and not first.duplicate
    assert again.duplicate and again.text == ""
    assert await service.record(_msg("hello", message_id=7)) is None
    fixed_again = await service.respond(_msg("!!!", message_id=8))
    assert not fixed_again.duplicate
    assert (await service.respond(_msg("!!!", message_id=8))).duplicate
    assert [t for t, _, _ in _messages(db)] == ["hello", "Hi there!", "!!!", answers.NO_WORDS]


async def test_opting_out_and_back_in_is_stored_for_the_person(
    service: DialogueService, db: Database
) -> None:
    person = UserRef("console", "u1", "Ann")
    await service.set_opted_out(person, True)
    user_id = db.read(conversations.find_user, "console", "u1")
    assert user_id is not None and db.read(privacy.is_opted_out, user_id)
    await service.set_opted_out(person, False)
    assert not db.read(privacy.is_opted_out, user_id)


async def test_a_sent_reply_id_that_cannot_be_recorded_is_reported_not_raised(
    service: DialogueService, db: Database
) -> None:
    answer = await service.respond(_msg("hello"))
    assert answer.reply_id is not None
    assert await service.mark_sent(answer.reply_id, 555)
    with db.session() as s:
        assert conversations.get_turn(s, answer.reply_id).external_id == "555"  # type: ignore[union-attr]
    assert not await service.mark_sent(10_000, 556)  # no such reply (e.g. forgotten meanwhile)


async def test_a_command_counts_as_delivered_once_per_chat_and_message_id(
    service: DialogueService,
) -> None:
    assert await service.first_delivery("telegram", 101, 5)
    assert not await service.first_delivery("telegram", 101, 5)
    assert await service.first_delivery("telegram", 102, 5)  # another chat's message 5
    assert await service.first_delivery("console", 101, 5)
    assert await service.first_delivery("telegram", 101, 6)


# ---- the outbox and database outages --------------------------------------------------------


def _outbox(db: Database) -> list[tuple[str, str | None, int | None, str | None]]:
    with db.session() as s:
        rows = s.execute(
            select(
                OutboxMessage.text,
                OutboxMessage.dedupe_key,
                OutboxMessage.message_id,
                OutboxMessage.reply_to_external_id,
            ).order_by(OutboxMessage.id)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


ROUTE = ReplyRoute(
    chat_key=55, reply_to=9, markup=lambda reply_id: {"id": reply_id}, source_key="u:1"
)


async def test_with_a_route_the_reply_is_queued_with_the_stored_reply(
    service: DialogueService, db: Database
) -> None:
    answer = await service.respond(_msg("hello", message_id=9), ROUTE)
    fixed = await service.respond(_msg("!!!", message_id=10), ROUTE)
    empty = await service.respond(_msg("   ", message_id=11), ROUTE)

    assert answer.queued and fixed.queued and empty.queued
    assert answer.fixed_reason is None
    assert (fixed.fixed_reason, empty.fixed_reason) == (FixedReason.NO_WORDS, FixedReason.EMPTY)
    assert _outbox(db) == [
        ("Hi there!", f"answer:{answer.turn_id}", answer.reply_id, "9"),
        (answers.NO_WORDS, f"answer:{fixed.turn_id}", fixed.reply_id, "9"),
        (answers.EMPTY, "u:1:answer", None, "9"),  # nothing stored to key it by
    ]
    with db.session() as s:
        markup = s.execute(select(OutboxMessage.reply_markup).limit(1)).scalar_one()
    assert markup == {"id": answer.reply_id}


async def test_a_redelivered_message_whose_reply_never_went_out_gets_it_queued_once(
    service: DialogueService, db: Database
) -> None:
    answer = await service.respond(_msg("hello", message_id=7), ROUTE)
    with db.begin() as s:  # a reply stored before there was an outbox, never sent
        s.execute(delete(OutboxMessage))

    again = await service.respond(_msg("hello", message_id=7), ROUTE)
    once_more = await service.respond(_msg("hello", message_id=7), ROUTE)

    assert again.duplicate and once_more.duplicate
    assert not again.generated and again.fixed_reason is None  # it gets nothing at all
    assert _outbox(db) == [("Hi there!", f"answer:{answer.turn_id}", answer.reply_id, "9")]
    assert [t for t, _, _ in _messages(db)] == ["hello", "Hi there!"]  # stored once


async def test_a_redelivered_message_whose_reply_was_delivered_gets_nothing(
    service: DialogueService, db: Database
) -> None:
    answer = await service.respond(_msg("hello", message_id=7))  # no outbox: sent directly
    assert answer.reply_id is not None and await service.mark_sent(answer.reply_id, 900)

    again = await service.respond(_msg("hello", message_id=7), ROUTE)

    assert again.duplicate and _outbox(db) == []


async def test_a_locked_database_is_raised_not_apologised_and_nothing_is_half_stored(
    db: Database, models: ModelSlot, tmp_path: Path
) -> None:
    impatient = Database(db.url, StorageSettings(sqlite_busy_timeout_ms=50))
    service = DialogueService(impatient, models, DialogueSettings())
    holder = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(OperationalError) as raised:
            await service.respond(_msg("hello", message_id=3), ROUTE)
        holder.execute("ROLLBACK")
        assert is_transient(raised.value)
        assert _messages(db) == [] and _outbox(db) == []

        answer = await service.respond(_msg("hello", message_id=3), ROUTE)  # tried again
    finally:
        holder.close()
        await service.close()
        impatient.dispose()

    assert answer.text == "Hi there!" and answer.queued
    assert [t for t, _, _ in _messages(db)] == ["hello", "Hi there!"]
    assert len(_outbox(db)) == 1
