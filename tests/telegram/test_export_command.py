"""/export through the fake Bot API: a document (sendDocument) holding exactly the asker's
messages and the bot's replies to them, only in the private chat, once per cooldown, nothing for
a person with nothing stored or forgotten."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from bot.export_formats import FIELDS
from bot.telegram import export_command, phrases
from tests.support.fake_telegram.server import SentDocument
from tests.telegram.harness import ANN, BOB, GROUP, Harness, buttons

pytestmark = pytest.mark.slow  # the whole Telegram stack with a model


async def _chat(bot: Harness, person: dict[str, Any], text: str, **where: Any) -> None:
    chat = where.get("chat") or {"id": person["id"]}
    before = len(bot.fake.sent(chat["id"]))
    bot.fake.say(person, text, **where)
    await bot.fake.wait_for_message(chat["id"], before + 1)
    await bot.settle()


async def _document(bot: Harness, person: dict[str, Any], command: str = "/export") -> SentDocument:
    count = len(bot.fake.documents)
    bot.fake.say(person, command)
    await bot.fake.wait_for("sendDocument", count + 1)
    [document] = bot.fake.documents[count:]
    return document


def _jsonl(document: SentDocument) -> list[dict[str, Any]]:
    return [json.loads(line) for line in document.data.decode("utf-8").splitlines()]


async def test_export_sends_a_document_with_exactly_the_askers_messages(bot: Harness) -> None:
    await _chat(bot, ANN, "hello")
    await _chat(bot, ANN, "how are you?")
    await _chat(bot, ANN, "@tiny_test_bot hello", chat=GROUP)
    await _chat(bot, BOB, "@tiny_test_bot i am bob", chat=GROUP)
    await _chat(bot, BOB, "only bob says this")
    stored = bot.turns(ANN["id"]) + bot.turns(GROUP["id"])[:2]  # Ann's and the replies to her

    document = await _document(bot, ANN)

    assert document.chat_id == ANN["id"]
    assert document.filename.startswith(f"history-telegram-{ANN['id']}-")
    assert document.filename.endswith(".jsonl")
    assert document.caption == export_command.CAPTION[export_command.ExportFormat.JSONL].format(
        messages=6
    )
    records = _jsonl(document)
    assert [r["message_id"] for r in records] == [t.id for t in stored]
    assert [r["text"] for r in records] == [t.text for t in stored]
    assert {r["user_id"] for r in records} == {str(ANN["id"]), None}
    assert [r["role"] for r in records] == ["user", "bot"] * 3
    assert all(r["model_version"] for r in records if r["role"] == "bot")
    assert b"bob" not in document.data.lower()


async def test_export_csv_sends_a_spreadsheet(bot: Harness) -> None:
    await _chat(bot, ANN, "hello, there")

    document = await _document(bot, ANN, "/export csv")

    assert document.filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(document.data.decode("utf-8"), newline="")))
    assert list(rows[0]) == list(FIELDS)
    assert [(r["role"], r["user_id"]) for r in rows] == [("user", str(ANN["id"])), ("bot", "")]
    assert rows[0]["text"] == "hello, there"


async def test_a_second_export_within_the_cooldown_is_refused_with_the_wait(
    bot: Harness,
) -> None:
    await _chat(bot, ANN, "hello")
    await _document(bot, ANN)

    await _chat(bot, ANN, "/export")

    assert bot.fake.sent(ANN["id"])[-1]["text"] == export_command.WAIT.format(minutes=10)
    assert len(bot.fake.documents) == 1
    await _chat(bot, BOB, "hello")  # the cooldown is per person
    await _document(bot, BOB)


async def test_export_in_a_group_points_to_the_private_chat(bot: Harness) -> None:
    await _chat(bot, ANN, "@tiny_test_bot hello", chat=GROUP)

    await _chat(bot, ANN, "/export@tiny_test_bot", chat=GROUP)

    assert bot.fake.sent(GROUP["id"])[-1]["text"] == export_command.PRIVATE_ONLY
    assert bot.fake.documents == []


@pytest.mark.parametrize("argument", ["xml", "csv jsonl"])
async def test_an_unknown_format_gets_the_usage(bot: Harness, argument: str) -> None:
    await _chat(bot, ANN, f"/export {argument}")

    assert bot.fake.sent(ANN["id"])[-1]["text"] == export_command.USAGE
    assert bot.fake.documents == []


async def test_nothing_stored_gets_a_friendly_text_not_a_file(bot: Harness) -> None:
    await _chat(bot, ANN, "/export")

    assert bot.fake.sent(ANN["id"])[-1]["text"] == export_command.NOTHING
    assert bot.fake.documents == []


async def test_a_forgotten_person_exports_nothing(
    start_bot: Callable[..., Any],
) -> None:
    async with start_bot(export_cooldown_seconds=0) as bot:  # the export before /forget counts
        await _chat(bot, ANN, "hello")
        await _document(bot, ANN)
        await _chat(bot, ANN, "/forget")
        question = bot.fake.sent(ANN["id"])[-1]
        bot.fake.press(ANN, question, buttons(question)[0]["callback_data"])
        await bot.fake.wait_for_message(ANN["id"], len(bot.fake.sent(ANN["id"])) + 1)
        await bot.settle()

        await _chat(bot, ANN, "/export")

        assert bot.fake.sent(ANN["id"])[-1]["text"] == export_command.NOTHING
        assert len(bot.fake.documents) == 1


async def test_export_is_in_help_and_the_command_menu(bot: Harness) -> None:
    assert "/export" in phrases.HELP
    default = json.dumps({"type": "default"}, sort_keys=True)
    assert "export" in [c["command"] for c in bot.fake.commands[default]]
