"""👍/👎 under the bot's replies: one vote per user and reply, a second press changes it."""

from __future__ import annotations

from typing import Any

import pytest

from bot.telegram import phrases
from tests.telegram.harness import ANN, BOB, GROUP, Harness, buttons


async def _reply_to_hello(bot: Harness, person: dict[str, Any], count: int = 1) -> dict[str, Any]:
    bot.fake.say(person, "hello")
    replies = await bot.fake.wait_for_message(person["id"], count)
    await bot.settle()
    return replies[-1]


async def test_a_press_is_stored_acknowledged_and_marked(bot: Harness) -> None:
    reply = await _reply_to_hello(bot, ANN)
    up, _ = buttons(reply)

    bot.fake.press(ANN, reply, up["callback_data"])
    [answer] = await bot.fake.wait_for("answerCallbackQuery")
    await bot.settle()

    reply_id = bot.turns(ANN["id"])[-1].id
    assert bot.votes() == [(reply_id, bot.user_id(ANN["id"]), 1)]
    assert answer.params["text"] == phrases.FEEDBACK_THANKS[1]
    marked = bot.fake.messages[(ANN["id"], reply["message_id"])]
    assert [b["text"] for b in buttons(marked)] == ["👍 ✓", "👎"]


async def test_a_second_press_changes_the_vote_and_the_same_press_changes_nothing(
    bot: Harness,
) -> None:
    reply = await _reply_to_hello(bot, ANN)
    up, down = (b["callback_data"] for b in buttons(reply))
    reply_id = bot.turns(ANN["id"])[-1].id
    ann = bot.user_id(ANN["id"])

    bot.fake.press(ANN, reply, up)
    bot.fake.press(ANN, reply, down)
    await bot.fake.wait_for("answerCallbackQuery", 2)
    await bot.settle()
    assert bot.votes() == [(reply_id, ann, -1)]

    bot.fake.press(ANN, reply, down)
    [*_, third] = await bot.fake.wait_for("answerCallbackQuery", 3)
    await bot.settle()
    assert bot.votes() == [(reply_id, ann, -1)]
    assert third.params["text"] == phrases.FEEDBACK_SAME
    assert [b["text"] for b in buttons(bot.fake.messages[(ANN["id"], reply["message_id"])])] == [
        "👍",
        "👎 ✓",
    ]


async def test_quick_presses_are_stored_in_order_and_the_last_one_wins(bot: Harness) -> None:
    reply = await _reply_to_hello(bot, ANN)
    up, down = (b["callback_data"] for b in buttons(reply))
    presses = [up, down] * 5 + [up, down, down]

    for data in presses:
        bot.fake.press(ANN, reply, data)
    await bot.fake.wait_for("answerCallbackQuery", len(presses))
    await bot.settle()

    assert [value for _, _, value in bot.votes()] == [-1]


async def test_votes_of_two_people_in_a_group_are_kept_apart(bot: Harness) -> None:
    bot.fake.say(ANN, "@tiny_test_bot hello", chat=GROUP)
    [reply] = await bot.fake.wait_for_message(GROUP["id"])
    up, down = (b["callback_data"] for b in buttons(reply))

    bot.fake.press(ANN, reply, up)
    bot.fake.press(BOB, reply, down)
    await bot.fake.wait_for("answerCallbackQuery", 2)
    await bot.settle()

    reply_id = bot.turns(GROUP["id"])[-1].id
    assert sorted(bot.votes()) == sorted(
        [(reply_id, bot.user_id(ANN["id"]), 1), (reply_id, bot.user_id(BOB["id"]), -1)]
    )
    assert "reply_markup" in bot.fake.messages[(GROUP["id"], reply["message_id"])]
    assert bot.fake.calls_to("editMessageReplyMarkup") == []  # shared buttons stay unmarked


async def test_a_button_naming_another_chats_reply_stores_nothing(bot: Harness) -> None:
    await _reply_to_hello(bot, ANN)
    bobs_reply = await _reply_to_hello(bot, BOB)
    anns_reply_id = bot.turns(ANN["id"])[-1].id

    bot.fake.press(BOB, bobs_reply, f"fb:+1:{anns_reply_id}")
    [answer] = await bot.fake.wait_for("answerCallbackQuery")
    await bot.settle()

    assert bot.votes() == []
    assert answer.params["text"] == phrases.FEEDBACK_GONE


async def test_an_unknown_button_is_only_acknowledged(bot: Harness) -> None:
    reply = await _reply_to_hello(bot, ANN)

    bot.fake.press(ANN, reply, "something-old")
    [answer] = await bot.fake.wait_for("answerCallbackQuery")
    await bot.settle()

    assert "text" not in answer.params
    assert bot.votes() == []


@pytest.mark.parametrize(
    ("data", "answer_text"),
    [
        (f"fb:+1:{2**63}", phrases.FEEDBACK_GONE),  # one past the largest 64-bit row id
        ("fb:-1:" + "9" * 64, phrases.FEEDBACK_GONE),  # as long as Telegram's callback data goes
        ("fb:+1:" + "9" * 65, None),  # longer than any button of ours: a stale button, no text
    ],
    ids=["2**63", "64-digits", "65-digits"],
)
async def test_a_vote_for_an_id_no_row_can_have_is_refused_politely(
    bot: Harness, data: str, answer_text: str | None
) -> None:
    reply = await _reply_to_hello(bot, ANN)
    bot.fake.press(ANN, reply, data)
    [answer] = await bot.fake.wait_for("answerCallbackQuery")
    await bot.settle()

    assert answer.params.get("text") == answer_text
    assert bot.votes() == []
    assert bot.fake.sent(ANN["id"]) == [reply]  # no apology: nothing went wrong
