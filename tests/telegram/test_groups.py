"""Groups: the bot answers when @mentioned, when replied to, and for `/cmd@botname`; everything
else there is people talking to each other: stored, not answered."""

from __future__ import annotations

from bot import answers
from bot.telegram import phrases
from tests.telegram.harness import ANN, BOB, GROUP, Harness


async def test_chatter_between_people_is_stored_but_not_answered(bot: Harness) -> None:
    bot.fake.say(ANN, "hello", chat=GROUP)
    bot.fake.say(BOB, "how are you?", chat=GROUP)
    await bot.settle()

    assert bot.fake.sent(GROUP["id"]) == []
    assert bot.fake.calls_to("sendChatAction") == []
    turns = bot.turns(GROUP["id"])
    assert [(t.text, t.from_bot) for t in turns] == [("hello", False), ("how are you?", False)]
    counts = await bot.app.service.stats()
    assert (counts.group_chats, counts.users, counts.bot_replies) == (1, 2, 0)


async def test_a_mention_is_answered_in_a_thread_without_the_handle(bot: Harness) -> None:
    update = bot.fake.say(ANN, "@tiny_test_bot hello", chat=GROUP)
    [reply] = await bot.fake.wait_for_message(GROUP["id"])
    await bot.settle()

    assert reply["text"] == "Hi there!"
    assert reply["reply_to_message"]["message_id"] == update["message"]["message_id"]
    assert [t.text for t in bot.turns(GROUP["id"])] == ["hello", "Hi there!"]


async def test_the_mention_is_cut_out_exactly_after_emoji(bot: Harness) -> None:
    bot.fake.say(ANN, "😀👍 hello @tiny_test_bot, @Tiny_Test_Bot!", chat=GROUP)
    await bot.fake.wait_for_message(GROUP["id"])
    await bot.settle()

    assert bot.turns(GROUP["id"])[0].text == "😀👍 hello  ,  !"


async def test_a_text_mention_of_the_bot_is_answered(bot: Harness) -> None:
    text = "Tiny, hello"  # the name links to the bot (a mention without @username)
    mention = {"type": "text_mention", "offset": 0, "length": 4, "user": bot.fake.bot}
    bot.fake.push({"message": bot.fake.new_message(GROUP, ANN, text=text, entities=[mention])})
    [reply] = await bot.fake.wait_for_message(GROUP["id"])

    assert reply["text"] == "Hi there!"


async def test_a_reply_to_the_bot_is_answered_and_a_reply_to_a_person_is_not(
    bot: Harness,
) -> None:
    bot.fake.say(ANN, "@tiny_test_bot hello", chat=GROUP)
    [bots_message] = await bot.fake.wait_for_message(GROUP["id"])
    anns = bot.fake.say(ANN, "good night", chat=GROUP)["message"]
    bot.fake.say(BOB, "thank you", chat=GROUP, reply_to=anns)
    bot.fake.say(BOB, "how are you?", chat=GROUP, reply_to=bots_message)
    [_, reply] = await bot.fake.wait_for_message(GROUP["id"], 2)
    await bot.settle()

    assert reply["text"] == "I am fine, thanks."
    assert len(bot.fake.sent(GROUP["id"])) == 2
    assert [t.text for t in bot.turns(GROUP["id"])][2:] == [
        "good night",
        "thank you",
        "how are you?",
        "I am fine, thanks.",
    ]


async def test_commands_in_a_group_must_name_the_bot(bot: Harness) -> None:
    bot.fake.say(ANN, "/help", chat=GROUP)
    bot.fake.say(ANN, "/help@some_other_bot", chat=GROUP)
    bot.fake.say(ANN, "/dance", chat=GROUP)
    bot.fake.say(ANN, "/help@tiny_test_bot", chat=GROUP)
    [reply] = await bot.fake.wait_for_message(GROUP["id"])
    await bot.settle()

    assert reply["text"] == phrases.HELP
    assert len(bot.fake.sent(GROUP["id"])) == 1
    assert bot.turns(GROUP["id"]) == []  # commands are not dialogue


async def test_a_sticker_in_a_group_gets_a_note_only_when_it_replies_to_the_bot(
    bot: Harness,
) -> None:
    bot.fake.say(ANN, "@tiny_test_bot hello", chat=GROUP)
    [bots_message] = await bot.fake.wait_for_message(GROUP["id"])
    bot.fake.send_content(BOB, "sticker", chat=GROUP)
    bot.fake.send_content(BOB, "sticker", chat=GROUP, reply_to=bots_message)
    [_, note] = await bot.fake.wait_for_message(GROUP["id"], 2)
    await bot.settle()

    assert note["text"] == answers.NOT_TEXT
    assert note["reply_to_message"]["sticker"]  # answers the sticker, in its thread
    assert len(bot.fake.sent(GROUP["id"])) == 2
