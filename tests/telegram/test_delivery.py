"""Exactly-once replies across restarts, redeliveries and replicas: a reply not yet delivered is
sent by the next process, once; a redelivered message whose reply never went out gets it; a
delivered reply is never sent again; two webhook replicas on one database answer everything
once, each chat in order."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from bot.app import build_app
from bot.telegram import build_application, running
from bot.telegram.runner import RunningBot
from bot.telegram.webhook import WebhookConfig
from config import Settings
from storage import conversations
from storage.conversations import ChatRef, Turn, UserRef, save_exchange
from storage.database import Database
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.telegram.harness import ANN, Harness

QUICK: dict[str, Any] = {"delivery_poll_seconds": 0.2, "delivery_lease_seconds": 5.0}
StartBot = Callable[..., AbstractAsyncContextManager[Harness]]


async def test_a_reply_still_undelivered_when_the_bot_stops_is_sent_by_the_next_one_once(
    start_bot: StartBot,
) -> None:
    async with start_bot(**QUICK) as bot:
        bot.fake.fail("sendMessage", 500, times=1000)  # Telegram down for this bot's lifetime
        bot.fake.say(ANN, "hello")
        await bot.fake.wait_for("sendMessage", 2, ok=False)
    bot.fake.clear_faults()

    async with start_bot(**QUICK) as bot:
        [reply] = await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()

        assert reply["text"] == "Hi there!" and len(bot.fake.sent()) == 1
        turn, stored_reply = bot.turns(ANN["id"])
        assert (turn.text, stored_reply.text) == ("hello", "Hi there!")
        assert stored_reply.external_id == str(reply["message_id"])


async def test_a_redelivered_message_whose_stored_reply_never_went_out_gets_it(
    start_bot: StartBot, database: Database
) -> None:
    # What the bot left before there was an outbox: message 1 and its reply stored, never sent.
    with database.begin() as session:
        save_exchange(
            session,
            ChatRef("telegram", ANN["id"]),
            UserRef("telegram", ANN["id"], "Ann"),
            "hello",
            "Hi there!",
            turn_external_id=1,
        )

    async with start_bot(**QUICK) as bot:
        update = bot.fake.say(ANN, "hello")  # Telegram delivers message 1 again
        assert update["message"]["message_id"] == 1
        [reply] = await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()

        assert reply["text"] == "Hi there!" and len(bot.fake.sent()) == 1
        assert [(t.text, t.external_id) for t in bot.turns(ANN["id"])] == [
            ("hello", "1"),
            ("Hi there!", str(reply["message_id"])),
        ]


async def test_a_delivered_reply_is_never_sent_again_whatever_comes_again(
    start_bot: StartBot,
) -> None:
    async with start_bot(**QUICK) as bot:
        update = bot.fake.say(ANN, "hello")
        await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()
        bot.fake.push(dict(update))  # the same update again (same update id)

    async with start_bot(**QUICK) as bot:  # a restart
        again = {k: v for k, v in update.items() if k != "update_id"}
        bot.fake.push(again)  # the same message in a new update
        bot.fake.say(ANN, "bye")
        await bot.fake.wait_for_message(ANN["id"], 2)
        await bot.settle()

        first, second = bot.fake.sent(ANN["id"])  # one reply to hello, one to bye
        assert first["text"] == "Hi there!"
        assert [(t.text, t.external_id) for t in bot.turns(ANN["id"])] == [
            ("hello", "1"),
            ("Hi there!", str(first["message_id"])),
            ("bye", "3"),
            (second["text"], str(second["message_id"])),
        ]


@contextlib.asynccontextmanager
async def _replica(settings: Settings, webhook: WebhookConfig) -> AsyncIterator[RunningBot]:
    app = build_app(settings)
    try:
        async with running(build_application(app), webhook) as bot:
            yield bot
    finally:
        await app.close()


CHATS, PER_CHAT = 10, 5
TEXTS = ["hello", "how are you?", "bye", "thank you", "good night"]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])
async def test_two_webhook_replicas_on_one_database_answer_everything_once_in_order(
    fake: FakeTelegram, make_settings: Callable[..., Settings], backend: str
) -> None:
    hook = "https://bot.example.org/hook"
    settings = make_settings(**QUICK)
    config = WebhookConfig(hook, "replica-secret", port=0)
    async with _replica(settings, config) as one, _replica(make_settings(**QUICK), config) as two:
        assert one.webhook is not None and two.webhook is not None
        fake.route_webhook(
            f"http://127.0.0.1:{one.webhook.port}/hook",
            f"http://127.0.0.1:{two.webhook.port}/hook",
        )
        people = [tg.user(800 + i, f"R{i}") for i in range(CHATS)]
        asked: dict[int, list[str]] = {p["id"]: [] for p in people}
        for round_ in range(PER_CHAT):
            for person in people:
                text = TEXTS[(round_ + person["id"]) % len(TEXTS)]
                asked[person["id"]].append(text)
                fake.say(person, text)
        for person in people:
            await fake.wait_for_message(person["id"], PER_CHAT, timeout=60)
        handled = (one.dispatcher.handled, two.dispatcher.handled)

    assert sum(handled) == CHATS * PER_CHAT, handled  # each update by one replica, once
    assert len(fake.sent()) == CHATS * PER_CHAT
    db = Database(settings.resolved_database_url)
    try:
        for person in people:
            turns = _turns(db, person["id"])
            assert [t.text for t in turns if not t.from_bot] == asked[person["id"]]  # in order
            assert [t.from_bot for t in turns] == [False, True] * PER_CHAT
            sent = fake.sent(person["id"])
            assert [t.external_id for t in turns if t.from_bot] == [
                str(m["message_id"]) for m in sent
            ]
    finally:
        db.dispose()


def _turns(db: Database, chat_id: int) -> list[Turn]:
    chat = db.read(conversations.find_chat, "telegram", chat_id)
    return [] if chat is None else db.read(conversations.chat_history, chat)
