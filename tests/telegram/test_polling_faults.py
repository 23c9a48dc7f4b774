"""Polling that cannot die silently: a token Telegram stops taking ends `chatbot telegram` with
one line and a non-zero exit (a supervisor restarts it or alerts someone), and an update
python-telegram-bot cannot read is logged once and skipped while the updates around it are
answered.

Before: one 401 from getUpdates ended polling for good while the process ran on, fetching
nothing; one unreadable update kept polling in a hot loop on the same batch (6,838 CRITICAL
tracebacks, 15.8 MB of log in 20 s) and nothing after it was ever handled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from telegram.error import InvalidToken

from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram.updates import JSON
from tests.telegram.harness import ANN, BOB

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _unreadable() -> JSON:
    """A message whose message id, date and chat id are strings: PTB's parser raises on it. (The
    chat is an object so that the fake server can file it; PTB fails on the date first.)"""
    return {"message": {"message_id": "x", "date": "yesterday", "chat": {"id": "nope"}}}


# ---- in-process: the running bot ---------------------------------------------------------------


# pytest resets warning filters for each test; the real process below checks that PTB's advice
# about the plain-JSON call stays out of the log.
@pytest.mark.filterwarnings("ignore:Please use 'Bot.getUpdates'")
async def test_an_unreadable_update_is_skipped_and_logged_once(
    start_bot: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    async with start_bot(poll_timeout_seconds=1) as bot:
        # One batch of three: before, getUpdates failed on the whole batch, every time.
        bot.fake.say(ANN, "hello")
        poison = bot.fake.push(_unreadable())
        bot.fake.say(BOB, "how are you?")
        [to_ann] = await bot.fake.wait_for_message(ANN["id"], timeout=30)
        [to_bob] = await bot.fake.wait_for_message(BOB["id"], timeout=30)
        await bot.fake.wait_until_fetched()  # confirmed, the unreadable one included

    assert (to_ann["text"], to_bob["text"]) == ("Hi there!", "I am fine, thanks.")
    skipped = [r for r in caplog.records if f"skipped update {poison['update_id']}" in r.message]
    assert len(skipped) == 1 and skipped[0].levelno == logging.ERROR
    assert not [r for r in caplog.records if r.levelno == logging.CRITICAL]


async def test_a_404_from_getupdates_ends_the_running_block_with_invalid_token(
    start_bot: Callable[..., Any],
) -> None:
    with pytest.raises(InvalidToken):
        async with start_bot(poll_timeout_seconds=1) as bot:
            await bot.fake.wait_for("getUpdates", ok=None)
            bot.fake.fail("getUpdates", 404, times=1000, description="Not Found")
            # Before, this waited its whole 20 s: polling had ended and nothing said so.
            await asyncio.wait_for(asyncio.Event().wait(), 20)


# ---- the real `chatbot telegram` process ---------------------------------------------------------


@pytest.fixture
def db_file(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "chatbot.db"
    shutil.copyfile(sqlite_template, path)
    return path


@asynccontextmanager
async def _chatbot_telegram(
    fake: FakeTelegram, db_file: Path, model_dir: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, Path]]:
    """The real command, its output (stdout and stderr) in a file; killed if still running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        CHATBOT_TELEGRAM_TOKEN=fake.token,
        CHATBOT_TELEGRAM_BASE_URL=fake.base_url,
        CHATBOT_DATABASE_URL=f"sqlite:///{db_file}",
        CHATBOT_DATA_DIR=str(db_file.parent),
        CHATBOT_MODEL_DIR=str(model_dir),
        CHATBOT_TELEGRAM__POLL_TIMEOUT_SECONDS="1",
    )
    log = db_file.parent / "chatbot.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would block the bot
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from bot.cli import main; sys.exit(main())",
            "telegram",
            cwd=db_file.parent,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        yield process, log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _unless_it_exits(
    waiting: Awaitable[T], process: asyncio.subprocess.Process, log: Path
) -> T:
    """`waiting`'s result, unless the process exits first (then fail with the end of its log)."""
    wanted = asyncio.ensure_future(waiting)
    exited = asyncio.ensure_future(process.wait())
    done, _ = await asyncio.wait({wanted, exited}, return_when=asyncio.FIRST_COMPLETED)
    if wanted not in done:
        wanted.cancel()
        pytest.fail(
            f"chatbot telegram exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        )
    exited.cancel()
    return wanted.result()


@pytest.mark.slow  # a real process
async def test_a_revoked_token_ends_the_process_with_one_line_and_a_nonzero_exit(
    fake: FakeTelegram, db_file: Path, tiny_model_dir: Path
) -> None:
    async with _chatbot_telegram(fake, db_file, tiny_model_dir) as (process, log):
        fake.say(ANN, "hello")
        await _unless_it_exits(fake.wait_for_message(ANN["id"], timeout=120), process, log)
        fake.fail("getUpdates", 401, times=1000, description="Unauthorized")

        code = await asyncio.wait_for(process.wait(), 30)

    output = log.read_text()
    lines = output.splitlines()
    assert code != 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    reports = [line for line in lines if "refused" in line or " ERROR " in line or " WARN" in line]
    assert reports == [lines[-1]], output[-3000:]
    assert lines[-1].startswith("chatbot telegram: error: Telegram refused the bot token")


@pytest.mark.slow  # a real process
async def test_an_unreadable_update_between_two_good_ones_costs_one_log_line(
    fake: FakeTelegram, db_file: Path, tiny_model_dir: Path
) -> None:
    fake.say(ANN, "hello")
    poison = fake.push(_unreadable())
    fake.say(BOB, "how are you?")

    async with _chatbot_telegram(fake, db_file, tiny_model_dir) as (process, log):
        [to_ann] = await _unless_it_exits(
            fake.wait_for_message(ANN["id"], timeout=120), process, log
        )
        [to_bob] = await _unless_it_exits(
            fake.wait_for_message(BOB["id"], timeout=30), process, log
        )
        await fake.wait_until_fetched()
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert (to_ann["text"], to_bob["text"]) == ("Hi there!", "I am fine, thanks.")
    assert output.count(f"skipped update {poison['update_id']}") == 1, output[-3000:]
    assert len(output.splitlines()) < 100, output[-3000:]
    assert "Traceback" not in output and "CRITICAL" not in output, output[-3000:]
    assert "Warning" not in output, output[-3000:]  # PTB's advice about the plain-JSON call
