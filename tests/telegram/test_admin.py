"""/status and /stats: for the ids in CHATBOT_ADMIN_IDS; anyone else gets "not allowed"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot import answers
from storage import model_versions
from tests.support.fake_telegram import updates as tg
from tests.telegram.harness import ADMIN, ADMIN_ID, ANN, GROUP, Harness, buttons


async def _conversation(bot: Harness) -> None:
    bot.fake.say(ANN, "hello")
    bot.fake.say(ANN, "@tiny_test_bot how are you?", chat=GROUP)
    await bot.fake.wait_for_message(ANN["id"])
    await bot.fake.wait_for_message(GROUP["id"])


async def test_status_shows_the_model_its_metrics_uptime_and_counts(bot: Harness) -> None:
    await _conversation(bot)
    bot.fake.say(ADMIN, "/status")
    [status] = await bot.fake.wait_for_message(ADMIN_ID)

    lines = status["text"].splitlines()
    assert lines[0] == "Model: tiny (checkpoint)"
    assert lines[1].startswith("Metrics: {") and "valid_loss" in lines[1]
    assert lines[2].startswith("Uptime: 0h 0m ")
    assert lines[3] == "Messages: 4 (2 from people, 2 replies)"
    assert lines[4] == "Users: 1"


async def test_status_shows_the_registry_metrics_of_an_active_version(
    bot: Harness, tiny_model_dir
) -> None:
    def register(session) -> None:
        model_versions.register_version(
            session, "tiny", str(tiny_model_dir), metrics={"bleu": 12.5, "valid_ppl": 3.25}
        )
        model_versions.activate_version(session, "tiny")

    bot.app.db.transact(register)
    bot.fake.say(ADMIN, "/status")
    [status] = await bot.fake.wait_for_message(ADMIN_ID)

    assert status["text"].splitlines()[:2] == [
        "Model: tiny (registry)",
        'Metrics: {"bleu": 12.5, "valid_ppl": 3.25}',
    ]


async def test_stats_counts_people_chats_messages_and_ratings(bot: Harness) -> None:
    await _conversation(bot)
    bot.fake.say(ADMIN, "/stats")
    [stats] = await bot.fake.wait_for_message(ADMIN_ID)

    text = stats["text"]
    assert "Telegram, last 24 h:\n  users 1, chats 2 (1 groups)" in text
    assert "messages 2, replies 2" in text
    assert "ratings 👍 0 / 👎 0" in text
    assert text.endswith("Last training run: none")


@pytest.mark.parametrize("command", ["/status", "/stats"])
async def test_anyone_else_is_not_allowed_and_nothing_happens(
    bot: Harness, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_counting(*args: object, **kwargs: object) -> None:
        raise AssertionError("counted for a non-admin")

    monkeypatch.setattr(bot.app.service, "stats", no_counting)
    bot.fake.say(ANN, command)
    [reply] = await bot.fake.wait_for_message(ANN["id"])
    await bot.settle()

    assert reply["text"] == answers.NOT_ALLOWED
    assert len(bot.fake.calls_to("sendMessage")) == 1


async def test_counts_filter_by_platform_and_time(bot: Harness) -> None:
    await _conversation(bot)
    [reply] = bot.fake.sent(ANN["id"])
    bot.fake.press(ANN, reply, buttons(reply)[0]["callback_data"])
    await bot.fake.wait_for("answerCallbackQuery")
    await bot.settle()

    everything = await bot.app.service.stats()
    console = await bot.app.service.stats(platform="console")
    future = await bot.app.service.stats(since=datetime.now(UTC) + timedelta(minutes=1))

    assert (everything.users, everything.chats, everything.group_chats) == (1, 2, 1)
    assert (everything.user_messages, everything.bot_replies, everything.messages) == (2, 2, 4)
    assert (everything.feedback_up, everything.feedback_down) == (1, 0)
    assert everything.mean_latency_ms is not None and everything.mean_latency_ms > 0
    assert console.messages == future.messages == future.feedback_up == 0


@pytest.mark.parametrize("forged_id", [float(ADMIN_ID), str(ADMIN_ID)], ids=["float", "string"])
async def test_an_admin_id_that_is_not_an_integer_is_not_an_admin(
    bot: Harness, forged_id: object
) -> None:
    forger = {**ADMIN, "id": forged_id}  # in the admin's own chat, to make it look right
    bot.fake.say(forger, "/status", chat=tg.private_chat(ADMIN))
    [reply] = await bot.fake.wait_for_message(ADMIN_ID)

    assert reply["text"] == answers.NOT_ALLOWED
