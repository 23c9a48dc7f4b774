"""A private chat end to end: getUpdates long polling over HTTP, the real Application, the tiny
trained model, a real database (SQLite, and PostgreSQL for the first test)."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import answers, command_replies
from bot.telegram import phrases
from bot.telegram.application import PUBLIC_COMMANDS
from storage.tables import Chat, User
from tests.support.fake_telegram import updates as tg
from tests.telegram.harness import ANN, Harness, buttons

GREETING_REPLY = "Hi there!"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_hello_gets_exactly_one_reply_and_both_turns_are_stored(bot: Harness) -> None:
    update = bot.fake.say(ANN, "hello")
    [reply] = await bot.fake.wait_for_message(ANN["id"])
    await bot.settle()

    assert reply["text"] == GREETING_REPLY
    assert len(bot.fake.sent(ANN["id"])) == 1
    assert [b["text"] for b in buttons(reply)] == ["👍", "👎"]
    turn, answer = bot.turns(ANN["id"])
    assert (turn.text, turn.from_bot) == ("hello", False)
    assert turn.external_id == str(update["message"]["message_id"])
    assert (answer.text, answer.from_bot, answer.reply_to_id) == (GREETING_REPLY, True, turn.id)
    assert answer.external_id == str(reply["message_id"])
    assert buttons(reply)[0]["callback_data"] == f"fb:+1:{answer.id}"


async def test_a_typing_indicator_is_shown_before_the_reply(bot: Harness) -> None:
    bot.fake.say(ANN, "how are you?")
    await bot.fake.wait_for_message(ANN["id"])
    [typing] = await bot.fake.wait_for("sendChatAction")
    [sent] = bot.fake.calls_to("sendMessage")

    assert typing.params == {"chat_id": ANN["id"], "action": "typing"}
    assert typing.at <= sent.at
    assert sent.params["text"] == "I am fine, thanks."


async def test_typing_is_shown_only_when_generating_takes_longer_than_the_delay(
    start_bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with start_bot(typing_delay_seconds=0.2) as bot:
        bot.fake.say(ANN, "hello")  # the tiny model answers in milliseconds
        await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()
        assert bot.fake.calls_to("sendChatAction") == []

        generate = bot.app.service.batcher.generate

        async def slow_generate(context: object) -> object:
            await asyncio.sleep(0.6)
            return await generate(context)

        monkeypatch.setattr(bot.app.service.batcher, "generate", slow_generate)
        bot.fake.say(ANN, "how are you?")
        [_, reply] = await bot.fake.wait_for_message(ANN["id"], 2)
        [typing] = bot.fake.calls_to("sendChatAction")

        assert reply["text"] == "I am fine, thanks."
        assert typing.at < bot.fake.calls_to("sendMessage")[-1].at


async def test_commands_are_published_with_set_my_commands(bot: Harness) -> None:
    default_scope = json.dumps({"type": "default"}, sort_keys=True)

    assert [c["command"] for c in bot.fake.commands[default_scope]] == [
        c.command for c in PUBLIC_COMMANDS
    ]


async def test_start_greets_says_what_the_bot_does_and_what_it_keeps(bot: Harness) -> None:
    bot.fake.say(ANN, "/start")
    [reply] = await bot.fake.wait_for_message(ANN["id"])

    assert reply["text"].startswith("Hi Ann!")
    assert "Privacy" in reply["text"] and "/forget" in reply["text"]
    assert "@tiny_test_bot" in reply["text"]
    await bot.settle()
    assert bot.turns(ANN["id"]) == []  # commands are not dialogue


async def test_help_lists_the_commands_but_not_the_admin_ones(bot: Harness) -> None:
    bot.fake.say(ANN, "/help")
    [reply] = await bot.fake.wait_for_message(ANN["id"])

    assert reply["text"] == phrases.HELP
    assert "/status" not in reply["text"]


async def test_reset_starts_a_new_context_for_this_chat_and_keeps_the_stored_turns(
    bot: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    resets: list[tuple[str, int]] = []
    real_reset = bot.app.service.reset

    async def spy(platform: str, chat_id: int) -> None:
        resets.append((platform, chat_id))
        await real_reset(platform, chat_id)

    monkeypatch.setattr(bot.app.service, "reset", spy)
    bot.fake.say(ANN, "hello")
    await bot.fake.wait_for_message(ANN["id"], 1)
    bot.fake.say(ANN, "/reset")
    [_, reset] = await bot.fake.wait_for_message(ANN["id"], 2)
    await bot.settle()

    assert reset["text"] == phrases.RESET
    assert resets == [("telegram", ANN["id"])]
    assert [t.text for t in bot.turns(ANN["id"])] == ["hello", GREETING_REPLY]


async def test_an_unknown_command_gets_a_pointer_to_help(bot: Harness) -> None:
    bot.fake.say(ANN, "/dance")
    [reply] = await bot.fake.wait_for_message(ANN["id"])

    assert reply["text"] == phrases.UNKNOWN_COMMAND


async def test_a_message_delivered_twice_is_answered_once(bot: Harness) -> None:
    update = bot.fake.say(ANN, "hello")
    await bot.fake.wait_for_message(ANN["id"])
    bot.fake.push({"message": update["message"]})  # the same message in a new update
    bot.fake.say(ANN, "how are you?")
    await bot.fake.wait_for_message(ANN["id"], count=2)
    await bot.settle()

    assert [m["text"] for m in bot.fake.sent(ANN["id"])] == [GREETING_REPLY, "I am fine, thanks."]
    assert [t.text for t in bot.turns(ANN["id"])] == [
        "hello",
        GREETING_REPLY,
        "how are you?",
        "I am fine, thanks.",
    ]


async def test_a_name_or_title_no_database_can_hold_locks_nobody_out(bot: Harness) -> None:
    # A NUL and a lone surrogate (valid JSON escapes, no UTF-8 form) in a name and a title.
    eve = tg.user(103, "Eve\x00\ud83d")
    group = tg.group_chat(-1002, "Fr\x00iends\udc00")
    bot.fake.say(eve, "/start")
    [greeting] = await bot.fake.wait_for_message(eve["id"])
    assert greeting["text"].startswith("Hi Eve! ")

    bot.fake.say(eve, "hello")
    bot.fake.say(eve, "@tiny_test_bot hello", chat=group)
    [_, reply] = await bot.fake.wait_for_message(eve["id"], 2)
    [group_reply] = await bot.fake.wait_for_message(group["id"])
    assert reply["text"] == group_reply["text"] == GREETING_REPLY

    bot.fake.press(eve, reply, buttons(reply)[0]["callback_data"])
    [vote] = await bot.fake.wait_for("answerCallbackQuery")
    assert vote.params["text"] == phrases.FEEDBACK_THANKS[1]
    bot.fake.say(eve, "/optout")
    [*_, opted_out] = await bot.fake.wait_for_message(eve["id"], 3)
    assert opted_out["text"] == command_replies.OPTOUT_DONE
    await bot.settle()

    assert [t.text for t in bot.turns(eve["id"])] == ["hello", GREETING_REPLY]
    assert [t.text for t in bot.turns(group["id"])] == ["hello", GREETING_REPLY]

    def names(session: Session) -> tuple[list[str | None], list[str | None]]:
        return (
            list(session.scalars(select(User.display_name))),
            list(session.scalars(select(Chat.title).where(Chat.kind == "group"))),
        )

    assert bot.app.db.read(names) == (["Eve"], ["Friends"])
    assert not any(m["text"] == answers.APOLOGY for m in bot.fake.sent())


async def test_a_command_delivered_again_after_a_restart_is_answered_once(start_bot) -> None:
    async with start_bot() as bot:
        update = bot.fake.say(ANN, "/help")
        await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()
    # The bot stopped before Telegram heard that the update was handled: it comes again.
    async with start_bot() as bot:
        bot.fake.push({"message": update["message"]})
        bot.fake.say(ANN, "/reset")
        await bot.fake.wait_for_message(ANN["id"], 2)
        await bot.settle()

        assert [m["text"] for m in bot.fake.sent(ANN["id"])] == [phrases.HELP, phrases.RESET]
