"""/forget: asks with inline buttons, then deletes that person's rows only and says how many;
afterwards no table and no file of the data directory holds their id, their name or a word of
theirs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData, select

from bot import command_replies
from bot.telegram import phrases
from tests.support.fake_telegram import updates as tg
from tests.telegram.harness import ANN, BOB, GROUP, Harness, buttons

# A person whose id, name and one word of theirs occur nowhere else (so a search finds only them).
ZED = tg.user(731_905_528, "Quorvath")
UNIQUE_WORD = "zixnobbler"


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
        "Done. Deleted 2 messages, 2 replies of mine, 1 rating and your user record.\n\n"
        + command_replies.FORGET_MODELS
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


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_after_forget_no_table_or_data_file_holds_their_id_name_or_words(
    bot: Harness, backend: str
) -> None:
    # Zed talks in private (a rated reply, commands) and in a group where Bob talks too.
    reply = await _chat(bot, ZED, f"my cat is called {UNIQUE_WORD}", 1)
    bot.fake.press(ZED, reply, buttons(reply)[0]["callback_data"])
    await bot.fake.wait_for("answerCallbackQuery")
    await _chat(bot, ZED, "/help", 2)
    await _chat(bot, ZED, "/reset", 3)  # a row of its own for the private chat's context start
    bot.fake.say(ZED, f"@tiny_test_bot {UNIQUE_WORD} says hi", chat=GROUP)
    await bot.fake.wait_for_message(GROUP["id"], 1)
    bot.fake.say(BOB, "@tiny_test_bot hello", chat=GROUP)
    await bot.fake.wait_for_message(GROUP["id"], 2)
    await bot.settle()
    assert _row_count(bot, "chat_context_starts") == 1
    needles = [UNIQUE_WORD, str(ZED["id"]), ZED["first_name"]]
    assert {n for n, _ in _found_in_tables(bot, needles)} == set(needles)  # the search works
    if backend == "sqlite":
        assert UNIQUE_WORD in {n for n, _ in _found_in_files(bot.app.settings.data_dir, needles)}

    question = await _chat(bot, ZED, "/forget", 4)
    bot.fake.press(ZED, question, buttons(question)[0]["callback_data"])
    [*_, done] = await bot.fake.wait_for_message(ZED["id"], 5)
    await bot.settle()

    assert done["text"].startswith("Done. Deleted 2 messages, 2 replies of mine, 1 rating")
    assert _found_in_tables(bot, needles) == []
    assert _row_count(bot, "chat_context_starts") == 0  # went with the private chat
    assert len(bot.turns(GROUP["id"])) == 2  # Bob's message and the reply to him stay
    if backend == "sqlite":  # PostgreSQL's files are the server's, not in the data directory
        # Their words are gone from the files too. Their id and name are not, yet: the button
        # press that confirmed and the answer to it were written after the deletion (and the
        # outbox needs the id to send it); later writes overwrite those pages of the files.
        found = _found_in_files(bot.app.settings.data_dir, needles)
        assert [needle for needle, _ in found if needle == UNIQUE_WORD] == []


def _found_in_tables(bot: Harness, needles: list[str]) -> list[tuple[str, str]]:
    """(needle, table.column) for every value of every table (read from the database itself,
    so tables added later are searched too) whose text holds a needle."""
    engine = bot.app.db.engine
    tables = MetaData()
    tables.reflect(bind=engine)
    found = []
    with engine.connect() as connection:
        for table in tables.sorted_tables:
            for row in connection.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    text = _as_text(value)
                    found += [(n, f"{table.name}.{column.name}") for n in needles if n in text]
    return found


def _row_count(bot: Harness, table_name: str) -> int:
    tables = MetaData()
    tables.reflect(bind=bot.app.db.engine, only=[table_name])
    with bot.app.db.engine.connect() as connection:
        return len(connection.execute(select(tables.tables[table_name])).all())


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else str(value)


def _found_in_files(directory: Path, needles: list[str]) -> list[tuple[str, str]]:
    """(needle, file) for every file under `directory` whose bytes hold a needle."""
    return [
        (needle, str(path.relative_to(directory)))
        for path in sorted(directory.rglob("*"))
        if path.is_file()
        for needle in needles
        if needle.encode() in path.read_bytes()
    ]
