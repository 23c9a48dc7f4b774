"""Bot API failures: a reply is sent until Telegram takes it (429 after `retry_after`; 5xx,
timeouts and bodies that are not JSON with a growing pause) or refuses it for good (403, 400:
logged, given up); the process keeps running and the stored turns stay. Unexpected errors:
logged, and the person gets a short apology."""

from __future__ import annotations

import itertools
import logging

import pytest

from bot import answers
from storage.tables import DeliveryStatus, OutboxMessage
from tests.telegram.harness import ANN, BOB, Harness


async def _assert_exchange_stored(bot: Harness, chat_id: int, sent: bool) -> None:
    turn, reply = bot.turns(chat_id)[-2:]
    assert (turn.from_bot, reply.from_bot, reply.reply_to_id) == (False, True, turn.id)
    assert (reply.external_id is not None) is sent


async def test_429_is_retried_after_retry_after(bot: Harness) -> None:
    bot.fake.fail("sendMessage", 429, retry_after=1)
    bot.fake.say(ANN, "hello")
    [reply] = await bot.fake.wait_for_message(ANN["id"])
    await bot.settle()

    [refused, accepted] = bot.fake.calls_to("sendMessage", ok=None)
    assert refused.status == 429 and accepted.ok
    assert accepted.at - refused.at >= 1.0
    assert reply["text"] == "Hi there!"
    await _assert_exchange_stored(bot, ANN["id"], sent=True)


async def test_a_500_is_retried(bot: Harness) -> None:
    bot.fake.fail("sendMessage", 500)
    bot.fake.say(ANN, "hello")
    [reply] = await bot.fake.wait_for_message(ANN["id"])
    await bot.settle()

    assert [c.status for c in bot.fake.calls_to("sendMessage", ok=None)] == [500, 200]
    assert reply["text"] == "Hi there!"
    await _assert_exchange_stored(bot, ANN["id"], sent=True)


async def test_a_reply_is_sent_through_500s_garbage_and_429s_until_telegram_takes_it(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    bot.fake.fail("sendMessage", 500, times=3)
    bot.fake.garble("sendMessage")  # a 200 whose body is not JSON
    bot.fake.fail("sendMessage", 429, retry_after=1, times=2)
    bot.fake.say(ANN, "hello")
    [reply] = await bot.fake.wait_for_message(ANN["id"], timeout=20)
    await bot.settle()

    statuses = [c.status for c in bot.fake.calls_to("sendMessage", ok=None)]
    assert statuses == [500, 500, 500, 200, 429, 429, 200]
    assert len(bot.fake.sent(ANN["id"])) == 1 and reply["text"] == "Hi there!"
    await _assert_exchange_stored(bot, ANN["id"], sent=True)
    assert any("sending failed" in r.getMessage() for r in caplog.records)

    bot.fake.say(ANN, "how are you?")  # and the bot goes on
    [_, second] = await bot.fake.wait_for_message(ANN["id"], 2)
    await bot.settle()
    assert second["text"] == "I am fine, thanks."
    assert len(bot.turns(ANN["id"])) == 4


@pytest.mark.slow
async def test_five_429s_in_a_row_do_not_lose_the_reply(bot: Harness) -> None:
    bot.fake.fail("sendMessage", 429, retry_after=1, times=5)
    bot.fake.say(ANN, "hello")
    [reply] = await bot.fake.wait_for_message(ANN["id"], timeout=30)
    await bot.settle()

    calls = bot.fake.calls_to("sendMessage", ok=None)
    assert [c.status for c in calls] == [429] * 5 + [200]
    assert all(b.at - a.at >= 1.0 for a, b in itertools.pairwise(calls))
    assert reply["text"] == "Hi there!"
    await _assert_exchange_stored(bot, ANN["id"], sent=True)


async def test_a_blocked_bot_is_logged_not_retried_and_others_are_still_answered(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram")
    bot.fake.fail("sendMessage", 403)
    bot.fake.say(ANN, "hello")
    await bot.fake.wait_for("sendMessage", ok=False)
    await bot.settle()
    bot.fake.say(BOB, "hello")
    await bot.fake.wait_for_message(BOB["id"])
    await bot.settle()

    assert [c.status for c in bot.fake.calls_to("sendMessage", ok=None)] == [403, 200]
    await _assert_exchange_stored(bot, ANN["id"], sent=False)
    assert any("refused a message for good" in r.getMessage() for r in caplog.records)
    with bot.app.db.session() as session:
        statuses = session.query(OutboxMessage.chat_key, OutboxMessage.status).all()
    # A delivered message keeps no chat in the outbox (storage.outbox.delivered); a refused one
    # keeps its chat for the operator.
    assert sorted(statuses) == [
        ("", DeliveryStatus.DONE.value),
        (str(ANN["id"]), DeliveryStatus.FAILED.value),
    ]


async def test_a_timed_out_send_is_retried(start_bot) -> None:
    async with start_bot(request_timeout_seconds=0.3) as bot:
        bot.fake.slow("sendMessage", 2.0)
        bot.fake.say(ANN, "hello")
        [reply] = await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()

        assert [c.status for c in bot.fake.calls_to("sendMessage", ok=None)] == [499, 200]
        assert reply["text"] == "Hi there!"
        await _assert_exchange_stored(bot, ANN["id"], sent=True)


async def test_a_failed_poll_is_retried(bot: Harness) -> None:
    bot.fake.fail("getUpdates", 502)
    await bot.fake.wait_for("getUpdates", ok=False)  # the long poll in flight ends first
    bot.fake.say(ANN, "hello")
    [reply] = await bot.fake.wait_for_message(ANN["id"])

    assert reply["text"] == "Hi there!"


async def test_an_unexpected_error_is_logged_and_answered_with_an_apology(
    bot: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object) -> None:
        raise RuntimeError("the model fell over")

    monkeypatch.setattr(bot.app.service, "respond", broken)
    bot.fake.say(ANN, "hello")
    [apology] = await bot.fake.wait_for_message(ANN["id"])
    await bot.settle()

    assert apology["text"] == answers.APOLOGY
    [logged] = [r for r in caplog.records if r.name == "bot.telegram.error_handler"]
    assert logged.levelno == logging.ERROR
    assert logged.exc_info is not None and "the model fell over" in str(logged.exc_info[1])
