"""/forget: asks with inline buttons, then deletes that person's rows only and says how many."""

from __future__ import annotations

from bot.telegram import phrases
from tests.telegram.harness import ANN, BOB, GROUP, Harness, buttons


async def _chat(bot: Harness, person: dict, text: str, replies: int) -> dict:
    bot.fake.say(person, text)
    sent = await bot.fake.wait_for_message(person["id"], replies)
    await bot.settle()
    return sent[-1]


async def test_forget_asks_and_no_keeps_everything(bot: Harness) -> None:
    await _chat(bot, ANN, "hello", 1)
    question = await _chat(bot, ANN, "/forget", 2)
    assert question["text"] == phrases.FORGET_ASK
    yes, no = buttons(question)
    assert (yes["callback_data"], no["callback_data"]) == (
        f"forget:yes:{ANN['id']}",
        f"forget:no:{ANN['id']}",
    )

    bot.fake.press(ANN, question, no["callback_data"])
    [*_, done] = await bot.fake.wait_for_message(ANN["id"], 3)
    await bot.settle()

    assert done["text"] == phrases.FORGET_CANCELLED
    assert len(bot.turns(ANN["id"])) == 2
    assert "reply_markup" not in bot.fake.messages[(ANN["id"], question["message_id"])]


async def test_forget_yes_deletes_that_persons_rows_only_and_reports_counts(bot: Harness) -> None:
    anns_reply = await _chat(bot, ANN, "hello", 1)
    await _chat(bot, ANN, "how are you?", 2)
    bot.fake.press(ANN, anns_reply, buttons(anns_reply)[0]["callback_data"])
    await bot.fake.wait_for("answerCallbackQuery")
    await _chat(bot, BOB, "hello", 1)
    bobs_turns = bot.turns(BOB["id"])

    question = await _chat(bot, ANN, "/forget", 3)
    bot.fake.press(ANN, question, buttons(question)[0]["callback_data"])
    [*_, done] = await bot.fake.wait_for_message(ANN["id"], 4)
    await bot.settle()

    assert done["text"] == (
        "Done. Deleted 2 messages, 2 replies of mine, 1 rating and your user record."
    )
    assert bot.turns(ANN["id"]) == []
    assert bot.user_id(ANN["id"]) is None
    assert bot.votes() == []
    assert bot.turns(BOB["id"]) == bobs_turns
    assert bot.user_id(BOB["id"]) is not None


async def test_only_the_person_who_asked_can_confirm_in_a_group(bot: Harness) -> None:
    bot.fake.say(ANN, "@tiny_test_bot hello", chat=GROUP)
    await bot.fake.wait_for_message(GROUP["id"], 1)
    bot.fake.say(ANN, "/forget@tiny_test_bot", chat=GROUP)
    [_, question] = await bot.fake.wait_for_message(GROUP["id"], 2)

    bot.fake.press(BOB, question, buttons(question)[0]["callback_data"])
    [alert] = await bot.fake.wait_for("answerCallbackQuery")
    await bot.settle()

    assert alert.params["text"] == phrases.NOT_YOURS
    assert alert.params["show_alert"] is True
    assert len(bot.turns(GROUP["id"])) == 2
    assert bot.user_id(ANN["id"]) is not None
    assert len(bot.fake.sent(GROUP["id"])) == 2


async def test_forget_with_nothing_stored_says_so(bot: Harness) -> None:
    question = await _chat(bot, ANN, "/forget", 1)
    bot.fake.press(ANN, question, buttons(question)[0]["callback_data"])
    [_, done] = await bot.fake.wait_for_message(ANN["id"], 2)

    assert done["text"] == phrases.FORGET_NOTHING
