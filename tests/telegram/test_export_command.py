"""/export through the fake Bot API: a document (sendDocument) holding exactly the asker's
messages and the bot's replies to them, only in the private chat, once per cooldown (across
webhook replicas that share Redis), nothing for a person with nothing stored or forgotten."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot import command_replies
from bot.app import build_app
from bot.export_formats import FIELDS
from bot.telegram import build_application, export_command, phrases, running
from bot.telegram.webhook import WebhookConfig
from config import Settings
from tests.support.fake_telegram import FakeTelegram
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

    assert bot.fake.sent(ANN["id"])[-1]["text"] == command_replies.EXPORT_NOTHING
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

        assert bot.fake.sent(ANN["id"])[-1]["text"] == command_replies.EXPORT_NOTHING
        assert len(bot.fake.documents) == 1


async def test_export_is_in_help_and_the_command_menu(bot: Harness) -> None:
    assert "/export" in phrases.HELP
    default = json.dumps({"type": "default"}, sort_keys=True)
    assert "export" in [c["command"] for c in bot.fake.commands[default]]


async def test_webhook_replicas_sharing_redis_refuse_a_second_export_within_the_cooldown(
    fake: FakeTelegram,
    make_settings: Callable[..., Settings],
    sqlite_template: Path,
    tmp_path: Path,
    redis_prefix: str,
    redis_url: str,
) -> None:
    """Two replicas that share nothing but Redis (each its own database, so each handles the
    /export the load balancer gave it): the first /export, through one, starts the cooldown
    (nothing stored: a sentence); the second, through the other, is told to wait. Each alone
    would have answered both."""
    second_db = tmp_path / "second.db"
    shutil.copyfile(sqlite_template, second_db)
    shared = {"redis_url": SecretStr(redis_url), "redis_key_prefix": redis_prefix}
    apps = [
        build_app(make_settings(database_url=url).model_copy(update=shared))
        for url in (None, f"sqlite:///{second_db}")
    ]
    config = WebhookConfig("https://bot.example.org/hook", "replica-secret", port=0)
    try:
        async with (
            running(build_application(apps[0]), config) as one,
            running(build_application(apps[1]), config) as two,
        ):
            assert one.webhook is not None and two.webhook is not None
            fake.route_webhook(
                f"http://127.0.0.1:{one.webhook.port}/hook",
                f"http://127.0.0.1:{two.webhook.port}/hook",
            )
            for count in (1, 2):
                fake.say(ANN, "/export")
                await fake.wait_for_message(ANN["id"], count, timeout=30)
            for app, replica in zip(apps, (one, two), strict=True):  # all handled, all sent
                await Harness(fake, app, replica).settle(timeout=30)
            handled = [one.dispatcher.handled, two.dispatcher.handled]
        sent = [m["text"] for m in fake.sent(ANN["id"])]
        assert handled == [1, 1]  # one /export through each replica
        assert sent == [command_replies.EXPORT_NOTHING, export_command.WAIT.format(minutes=10)]
    finally:
        for app in apps:
            await app.close()
