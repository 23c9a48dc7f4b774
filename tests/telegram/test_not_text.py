"""Whatever is not a new text message: a short note, or silence; never an exception."""

from __future__ import annotations

import logging
import time

import pytest

from bot import answers
from tests.support.fake_telegram import updates as tg
from tests.support.fake_telegram.updates import NOT_TEXT
from tests.telegram.harness import ANN, BOB, GROUP, Harness


async def test_stickers_photos_voice_documents_and_locations_get_a_short_note(
    bot: Harness,
) -> None:
    for kind in NOT_TEXT:
        bot.fake.send_content(ANN, kind)
    notes = await bot.fake.wait_for_message(ANN["id"], len(NOT_TEXT))
    await bot.settle()

    assert [n["text"] for n in notes] == [answers.NOT_TEXT] * len(NOT_TEXT)
    assert all("reply_markup" not in n for n in notes)  # not a stored reply: nothing to rate
    assert bot.turns(ANN["id"]) == []


async def test_edits_channel_posts_and_updates_without_a_message_are_ignored(
    bot: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    news = tg.channel(-1002, "News")
    original = bot.fake.say(ANN, "hello")["message"]
    await bot.fake.wait_for_message(ANN["id"])
    bot.fake.push({"edited_message": {**original, "text": "hello again", "edit_date": 1}})
    bot.fake.push(
        {"channel_post": bot.fake.new_message(news, None, text="hello", sender_chat=news)}
    )
    bot.fake.push({"edited_channel_post": bot.fake.new_message(news, None, text="hi", edit_date=1)})
    bot.fake.push({"my_chat_member": _bot_added_to(bot, GROUP, by=BOB)})
    bot.fake.push({"poll": _poll()})
    bot.fake.push({"message": bot.fake.new_message(GROUP, BOB, new_chat_members=[ANN])})
    bot.fake.push({})  # an update with nothing in it at all
    await bot.settle()

    bot.fake.say(ANN, "how are you?")  # and the bot still answers
    [_, reply] = await bot.fake.wait_for_message(ANN["id"], 2)
    await bot.settle()

    assert reply["text"] == "I am fine, thanks."
    assert bot.fake.sent(GROUP["id"]) == bot.fake.sent(news["id"]) == []
    assert len(bot.fake.calls_to("sendMessage")) == 2
    assert [t.text for t in bot.turns(ANN["id"])] == [
        "hello",
        "Hi there!",
        "how are you?",
        "I am fine, thanks.",
    ]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _bot_added_to(bot: Harness, chat: dict, by: dict) -> dict:
    return {
        "chat": chat,
        "from": by,
        "date": int(time.time()),
        "old_chat_member": {"status": "left", "user": bot.fake.bot},
        "new_chat_member": {"status": "member", "user": bot.fake.bot},
    }


def _poll() -> dict:
    return {
        "id": "poll-1",
        "question": "Tea or coffee?",
        "options": [
            {"text": "tea", "voter_count": 1, "persistent_id": "o1"},
            {"text": "coffee", "voter_count": 0, "persistent_id": "o2"},
        ],
        "total_voter_count": 1,
        "is_closed": False,
        "is_anonymous": True,
        "type": "regular",
        "allows_multiple_answers": False,
        "allows_revoting": False,
        "members_only": False,
    }
