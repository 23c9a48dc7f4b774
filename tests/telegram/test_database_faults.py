"""A database that does not answer is waited out, not turned into apologies: nothing is confirmed
to Telegram meanwhile (polling stops fetching, the webhook answers 503 and Telegram sends the
update again), nothing is lost, everything is answered once when it is back, and the log says
so in one line each way. A bot refuses to start on a database it cannot write to."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from bot import answers
from bot.cli.main import main
from bot.telegram.webhook import WebhookConfig
from config import StorageSettings
from storage import conversations, schema_revision
from storage.database import Database
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.support.fake_telegram.updates import JSON
from tests.support.waiting import wait_until_async
from tests.telegram import filesystem_faults, postgres_server, processes
from tests.telegram.harness import ANN, Harness

# Quick to notice work and to retry the database. A busy timeout short enough to pass quickly,
# long enough that the bot's own writers seldom wait that long for each other (at 100 ms they
# often did on 2 busy cores, at 2 s now and then: each time a real, if short, outage).
QUICK: dict[str, Any] = {
    "delivery_poll_seconds": 0.2,
    "database_retry_max_delay_seconds": 0.5,
    "delivery_lease_seconds": 5.0,
}
IMPATIENT = StorageSettings(sqlite_busy_timeout_ms=3000)
DOWN = "database unavailable"
BACK = "database answers again"

StartBot = Callable[..., AbstractAsyncContextManager[Harness]]


def _people(count: int, first_id: int = 300) -> list[JSON]:
    return [tg.user(first_id + i, f"P{i}") for i in range(count)]


def _assert_logged_as_one_outage(caplog: pytest.LogCaptureFixture, messages: int) -> None:
    """One line when the database went away, one when it came back, no traceback: not a line
    per message. (On a loaded machine the bot's own writers may once in a while wait past the
    busy timeout for each other: another short outage, logged the same way.)"""
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.telegram.outage"]
    states = ["down" if m.startswith(DOWN) else "back" for m in lines]
    assert states[:2] == ["down", "back"] and states == ["down", "back"] * (len(states) // 2)
    assert len(states) // 2 < messages / 3, lines
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def _noticed(bot: Harness) -> None:
    await wait_until_async(lambda: bot.bot.state.watch.down, what="the outage to be noticed")


async def _everyone_answered_once(bot: Harness, people: list[JSON]) -> None:
    for person in people:
        await bot.fake.wait_for_message(person["id"], timeout=30)
    await bot.settle(timeout=30)
    for person in people:
        assert [m["text"] for m in bot.fake.sent(person["id"])] == ["Hi there!"]
        assert [t.text for t in bot.turns(person["id"])] == ["hello", "Hi there!"]
    assert not any(m["text"] == answers.APOLOGY for m in bot.fake.sent())
    assert bot.fake.unconfirmed == []


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_database_locked_past_the_busy_timeout_is_waited_out(
    start_bot: StartBot, database: Database, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    caplog.set_level(logging.WARNING)
    people = _people(10)
    webhook = (
        WebhookConfig("https://bot.example.org/hook", "s3cret", port=0)
        if mode == "webhook"
        else None
    )
    assert database.url.database is not None
    async with start_bot(webhook=webhook, storage=IMPATIENT, **QUICK) as bot:
        holder = sqlite3.connect(database.url.database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process keeps the write lock
            for person in people:
                bot.fake.say(person, "hello")
            await _noticed(bot)
            if mode == "webhook":
                await wait_until_async(
                    lambda: 503 in bot.fake.webhook_statuses, what="a 503 to a webhook POST"
                )
            assert len(bot.fake.unconfirmed) == len(people)  # none confirmed, none lost
            assert bot.fake.sent() == []
        finally:
            holder.execute("ROLLBACK")
            holder.close()

        await _everyone_answered_once(bot, people)
    _assert_logged_as_one_outage(caplog, len(people))


async def test_a_message_handled_again_after_an_outage_counts_once_against_the_rate_limit(
    start_bot: StartBot, database: Database
) -> None:
    assert database.url.database is not None
    quick_to_fail = StorageSettings(sqlite_busy_timeout_ms=300)
    async with start_bot(storage=quick_to_fail, rate_limit_messages=2, **QUICK) as bot:
        bot.fake.say(ANN, "hello")  # one of Ann's two messages a minute
        await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()
        # The next message is stored and admitted; the database goes away while the model
        # works on it, so its reply cannot be stored, and it is handled again once it is back.
        generating, go_on = asyncio.Event(), asyncio.Event()
        generate = bot.app.service.batcher.generate

        async def held(context: list[str]) -> Any:
            generating.set()
            await go_on.wait()
            return await generate(context)

        bot.app.service.batcher.generate = held  # type: ignore[method-assign,assignment]
        bot.fake.say(ANN, "how are you?")
        await asyncio.wait_for(generating.wait(), 10)
        holder = sqlite3.connect(database.url.database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            go_on.set()
            await wait_until_async(
                lambda: bot.bot.dispatcher.reruns >= 1, what="the message to be handled again"
            )
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        await bot.fake.wait_for_message(ANN["id"], 2)
        await bot.settle()

        assert answers.SLOW_DOWN not in [m["text"] for m in bot.fake.sent(ANN["id"])]
        assert [t.text for t in bot.turns(ANN["id"]) if not t.from_bot] == [
            "hello",
            "how are you?",
        ]


@pytest.fixture
def database_dir(tmp_path: Path, sqlite_template: Path) -> Path:
    """A directory of its own holding a migrated database (chatbot.db)."""
    directory = tmp_path / "db"
    directory.mkdir()
    shutil.copyfile(sqlite_template, directory / "chatbot.db")
    return directory


async def test_a_database_that_turns_read_only_is_waited_out(
    start_bot: StartBot, database_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    people = _people(8)
    url = f"sqlite:///{database_dir / 'chatbot.db'}"
    async with start_bot(database_url=url, storage=IMPATIENT, **QUICK) as bot:
        with filesystem_faults.read_only_directory(database_dir):
            bot.app.db.engine.dispose()  # connections opened from now on find it read-only
            for person in people:
                bot.fake.say(person, "hello")
            await _noticed(bot)
            assert len(bot.fake.unconfirmed) == len(people)
            assert bot.fake.sent() == []

        await _everyone_answered_once(bot, people)
    _assert_logged_as_one_outage(caplog, len(people))


async def test_a_full_disk_is_waited_out(
    start_bot: StartBot, tmp_path: Path, sqlite_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    people = _people(20)
    cannot_mount = filesystem_faults.mount_unavailable()
    disk = tmp_path / "disk"
    if cannot_mount is not None:  # the database is capped instead
        disk.mkdir()
    mounted = filesystem_faults.small_disk(disk, 16 * 1024) if cannot_mount is None else None
    with mounted or contextlib.nullcontext():
        shutil.copyfile(sqlite_template, disk / "chatbot.db")
        url = f"sqlite:///{disk / 'chatbot.db'}"
        async with start_bot(database_url=url, storage=IMPATIENT, **QUICK) as bot:
            full = (
                filesystem_faults.disk_filled(disk)
                if cannot_mount is None
                else filesystem_faults.database_capped(bot.app.db)
            )
            with full:
                for person in people:
                    bot.fake.say(person, "hello")
                await _noticed(bot)
                unanswered = len(bot.fake.unconfirmed)
            assert unanswered > 0

            await _everyone_answered_once(bot, people)
    _assert_logged_as_one_outage(caplog, len(people))


# ---- starting on a database it cannot use: one line, exit 2 ---------------------------------

WELL_FORMED_TOKEN = "987654321:" + "Z" * 35


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    """`chatbot telegram` run in this process: no developer's CHATBOT_* or .env, the tiny model,
    a token never used (the bot refuses to start before it talks to Telegram)."""
    for key in list(os.environ):
        if key.startswith("CHATBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHATBOT_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("CHATBOT_TELEGRAM_TOKEN", WELL_FORMED_TOKEN)


def _refusal(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str) -> str:
    monkeypatch.setenv("CHATBOT_DATABASE_URL", url)
    code = main(["telegram"])
    err = capsys.readouterr().err
    assert code == 2, err
    [line] = err.splitlines()
    return line


@pytest.mark.usefixtures("cli_env")
def test_starting_on_a_read_only_database_is_one_line_and_exit_2(
    database_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with filesystem_faults.read_only_directory(database_dir):
        line = _refusal(monkeypatch, capsys, f"sqlite:///{database_dir / 'chatbot.db'}")

    # Where the files cannot be opened for writing at all, SQLite cannot even open a WAL
    # database ("cannot connect ... unable to open database file"); where it can open it, it
    # takes no writes ("takes no writes: attempt to write a readonly database"). One line either
    # way, naming the database.
    assert line.startswith("chatbot telegram: error: ") and str(database_dir) in line
    assert "unable to open database file" in line or "takes no writes" in line


@pytest.mark.usefixtures("cli_env")
def test_starting_on_an_unreachable_database_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{processes.free_port()}/none"

    line = _refusal(monkeypatch, capsys, url)

    assert line.startswith("chatbot telegram: error: cannot connect to ")


# ---- PostgreSQL stopped for 15 s under traffic, with the real process -----------------------


@pytest.fixture
def throwaway_postgres() -> Iterator[postgres_server.ThrowawayPostgres]:
    reason = postgres_server.unavailable()
    if reason is not None:
        pytest.skip(f"no throwaway PostgreSQL server: {reason}")
    server = postgres_server.ThrowawayPostgres()
    try:
        server.start()
        migrated = Database(server.url)
        try:
            schema_revision.upgrade(migrated)
        finally:
            migrated.dispose()
        yield server
    finally:
        server.destroy()


OUTAGE_SECONDS = 15.0


@pytest.mark.slow
async def test_postgres_stopped_for_15_s_under_traffic_loses_nothing(
    fake: FakeTelegram,
    throwaway_postgres: postgres_server.ThrowawayPostgres,
    tiny_model_dir: Path,
    tmp_path: Path,
) -> None:
    log = tmp_path / "chatbot.log"
    env = processes.bot_env(
        fake,
        throwaway_postgres.url,
        tmp_path,
        tiny_model_dir,
        CHATBOT_TELEGRAM__DELIVERY_POLL_SECONDS="0.2",
        CHATBOT_TELEGRAM__DELIVERY_LEASE_SECONDS="5",
        CHATBOT_TELEGRAM__DATABASE_RETRY_MAX_DELAY_SECONDS="1",
        CHATBOT_TELEGRAM__POLL_TIMEOUT_SECONDS="2",
    )
    before, during = _people(10, 400), _people(30, 500)
    process = await processes.start_bot_process(["telegram"], env, log)
    try:
        for person in before:
            fake.say(person, "hello")
        await processes.unless_it_exits(_all_answered(fake, before, timeout=120), process, log)

        await asyncio.to_thread(throwaway_postgres.stop)
        stopped = time.monotonic()
        for person in during:  # the traffic under test, spread over the outage
            fake.say(person, "hello")
            await asyncio.sleep(OUTAGE_SECONDS / len(during))
        unconfirmed_during = len(fake.unconfirmed)
        sent_during = len(fake.sent())
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        await asyncio.to_thread(throwaway_postgres.start)
        back = time.monotonic()

        await processes.unless_it_exits(_all_answered(fake, during, timeout=60), process, log)
        caught_up_s = time.monotonic() - back
        code = await processes.stop(process)
    finally:
        await processes.kill_hard(process)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert sent_during == len(before)  # nothing answered, no apology, while it was down
    assert unconfirmed_during > 0  # polling stopped confirming
    assert not any(m["text"] == answers.APOLOGY for m in fake.sent())
    for person in before + during:
        assert [m["text"] for m in fake.sent(person["id"])] == ["Hi there!"], person
    db = Database(throwaway_postgres.url)
    try:
        for person in before + during:
            chat = db.read(conversations.find_chat, "telegram", person["id"])
            assert chat is not None
            turns = db.read(conversations.chat_history, chat)
            assert [(t.text, t.external_id is not None) for t in turns] == [
                ("hello", True),
                ("Hi there!", True),
            ]
    finally:
        db.dispose()
    assert output.count(DOWN) == 1 and output.count(BACK) == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    print(  # measured numbers, for the record (pytest -s)
        f"\nPostgreSQL outage {OUTAGE_SECONDS:.0f} s: {len(during)} messages during it, "
        f"{unconfirmed_during} unconfirmed at its end, 0 lost; caught up {caught_up_s:.1f} s "
        "after it came back"
    )


async def _all_answered(fake: FakeTelegram, people: list[JSON], timeout: float) -> None:
    for person in people:
        await fake.wait_for_message(person["id"], timeout=timeout)
