"""Bot API failures: 429 is retried after `retry_after`, 5xx and timeouts a few times, 403 is
logged; the process keeps running and the stored turns stay. Unexpected errors: logged, and the
person gets a short apology."""

from __future__ import annotations

import logging

import pytest

from bot import answers
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


async def test_persistent_500s_lose_the_send_but_not_the_turns_and_the_bot_goes_on(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    bot.fake.fail("sendMessage", 500, times=3)  # the first try and both retries
    bot.fake.say(ANN, "hello")
    await bot.fake.wait_for("sendMessage", 3, ok=False)
    await bot.settle()

    assert bot.fake.sent(ANN["id"]) == []
    await _assert_exchange_stored(bot, ANN["id"], sent=False)
    assert any("stays stored" in r.getMessage() for r in caplog.records)

    bot.fake.say(ANN, "how are you?")
    [reply] = await bot.fake.wait_for_message(ANN["id"])
    await bot.settle()
    assert reply["text"] == "I am fine, thanks."
    assert len(bot.turns(ANN["id"])) == 4


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
    assert any("does not take messages" in r.getMessage() for r in caplog.records)


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
