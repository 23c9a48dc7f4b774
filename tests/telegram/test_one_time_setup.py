"""One-time setup once per deployment: `chatbot telegram setup` sets the webhook and the command
menus (one call each, idempotent, one line per action, exit 2 with one line on a Bot API error);
a webhook replica on PostgreSQL makes neither call when it starts, while the single-process bot
on SQLite still sets both itself."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.cli.main import main
from bot.telegram.application import ADMIN_COMMANDS, PUBLIC_COMMANDS
from storage.database import Database
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.support.waiting import wait_until_async
from tests.telegram import processes

HOOK = "https://bot.example.org/hook"
SECRET = "setup-test_secret"
SETUP_CALLS = ("setWebhook", "setMyCommands")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeTelegram) -> Iterator[Path]:
    """The environment of `chatbot telegram setup` against `fake`; no developer's CHATBOT_* or
    .env (a directory of our own)."""
    for key in list(os.environ):
        if key.startswith("CHATBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHATBOT_TELEGRAM_TOKEN", fake.token)
    monkeypatch.setenv("CHATBOT_TELEGRAM_BASE_URL", fake.base_url)
    monkeypatch.setenv("CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN", SECRET)
    yield tmp_path


async def _setup(*args: str) -> int:
    """`chatbot telegram setup ARGS...` in-process (a thread: it runs its own event loop, the
    fake runs on this one)."""
    return await asyncio.to_thread(main, ["telegram", "setup", *args])


def _setup_calls(fake: FakeTelegram) -> dict[str, int]:
    return {method: len(fake.calls_to(method, ok=None)) for method in SETUP_CALLS}


async def test_setup_sets_the_webhook_and_the_menus_once_each_and_again_changes_nothing(
    env: Path,
    fake: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    known, unknown = 4711, 4712  # an admin who opened a chat with the bot, one who did not
    fake.chats[known] = tg.private_chat(tg.user(known))
    monkeypatch.setenv("CHATBOT_ADMIN_IDS", f"{known},{unknown}")

    assert await _setup("--webhook-url", HOOK) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"webhook set: {HOOK}")
    assert out[1] == f"command menu set: {len(PUBLIC_COMMANDS)} commands for everyone"
    assert out[2] == (
        f"admin command menu set for {known}: {len(PUBLIC_COMMANDS + ADMIN_COMMANDS)} commands"
    )
    assert out[3].startswith(f"admin command menu not set for {unknown}: ")
    assert len(out) == 4
    assert fake.webhook is not None
    assert (fake.webhook["url"], fake.webhook["secret_token"]) == (HOOK, SECRET)
    set_up = (dict(fake.webhook), dict(fake.commands))
    everyone = [c for c in fake.calls_to("setMyCommands") if "scope" not in c.params]
    assert len(fake.calls_to("setWebhook")) == len(everyone) == 1

    assert await _setup("--webhook-url", HOOK) == 0  # idempotent: the same state again

    assert capsys.readouterr().out.splitlines() == out
    assert (fake.webhook, fake.commands) == set_up


async def test_setup_without_a_webhook_url_sets_only_the_menus(
    env: Path, fake: FakeTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _setup() == 0

    assert capsys.readouterr().out.splitlines() == [
        "webhook not set: no --webhook-url given (a long-polling bot needs none)",
        f"command menu set: {len(PUBLIC_COMMANDS)} commands for everyone",
    ]
    assert _setup_calls(fake) == {"setWebhook": 0, "setMyCommands": 1}


async def test_a_token_telegram_refuses_is_one_line_exit_2_and_nothing_is_set(
    env: Path,
    fake: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    revoked = "987654321:" + "Z" * 35  # well formed; the fake answers 401 Unauthorized
    monkeypatch.setenv("CHATBOT_TELEGRAM_TOKEN", revoked)

    assert await _setup("--webhook-url", HOOK) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "chatbot telegram: error: Telegram refused the bot token: check CHATBOT_TELEGRAM_TOKEN\n"
    )
    assert _setup_calls(fake) == {"setWebhook": 0, "setMyCommands": 0}


async def test_a_bot_api_error_is_one_line_and_exit_2(
    env: Path, fake: FakeTelegram, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.fail("setMyCommands", 500, description="Internal Server Error")

    assert await _setup("--webhook-url", HOOK) == 2

    captured = capsys.readouterr()
    assert captured.out.startswith("webhook set: ")  # what was done before the error
    [line] = captured.err.splitlines()
    assert line.startswith(f"chatbot telegram: error: Bot API at {fake.base_url}: ")
    assert fake.token not in captured.err


@pytest.mark.parametrize(
    ("args", "unset", "says"),
    [
        (["--webhook-url", "ftp://bot.example.org/hook"], None, "absolute https:// URL"),
        (["--webhook-url", HOOK], "CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN", "secret token"),
        (["--webhook-url", HOOK, "--secret-token", "no spaces"], None, "1-256 characters"),
        ([], "CHATBOT_TELEGRAM_TOKEN", "CHATBOT_TELEGRAM_TOKEN"),
    ],
)
async def test_bad_input_is_one_line_and_exit_2_before_any_call(
    env: Path,
    fake: FakeTelegram,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    unset: str | None,
    says: str,
) -> None:
    if unset is not None:
        monkeypatch.delenv(unset)

    assert await _setup(*args) == 2

    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("chatbot telegram: error: ") and says in line
    assert fake.calls == []


async def _started(port: int, process: asyncio.subprocess.Process, log: Path) -> None:
    """Until the webhook server answers /healthz and the bot logged that it takes updates (its
    start, setup calls included or not, is over)."""

    async def healthy() -> bool:
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/healthz") as response,
            ):
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def started() -> None:
        while not await healthy():
            await asyncio.sleep(0.05)
        await wait_until_async(
            lambda: "receives updates at its webhook" in log.read_text(errors="replace"),
            timeout=60,
            what="the bot's start to finish",
        )

    await processes.unless_it_exits(asyncio.wait_for(started(), 120), process, log)


@pytest.mark.slow  # real processes
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_replica_on_postgresql_sets_nothing_at_start_and_setup_makes_it_reachable(
    env: Path,
    fake: FakeTelegram,
    database: Database,
    tiny_model_dir: Path,
    tmp_path: Path,
    backend: str,
) -> None:
    url = database.url.render_as_string(hide_password=False)
    bot_env = processes.bot_env(
        fake, url, tmp_path, tiny_model_dir, CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN=SECRET
    )
    port = processes.free_port()
    log = tmp_path / "chatbot.log"
    process = await processes.start_bot_process(
        ["telegram", "--webhook-url", HOOK, "--port", str(port)], bot_env, log
    )
    try:
        await _started(port, process, log)
        if backend == "sqlite":  # the whole deployment in one process: it sets both itself
            assert _setup_calls(fake) == {"setWebhook": 1, "setMyCommands": 1}
            return
        assert _setup_calls(fake) == {"setWebhook": 0, "setMyCommands": 0}
        assert fake.webhook is None

        assert await _setup("--webhook-url", HOOK) == 0  # once, for the whole deployment
        assert _setup_calls(fake) == {"setWebhook": 1, "setMyCommands": 1}

        fake.route_webhook(f"http://127.0.0.1:{port}/hook")  # Telegram now posts to the replica
        ann = tg.user(901, "Ann")
        fake.say(ann, "hello")
        [reply] = await processes.unless_it_exits(
            fake.wait_for_message(ann["id"], timeout=60), process, log
        )
        assert reply["text"] == "Hi there!"
        assert await processes.stop(process) == 0, log.read_text()[-3000:]
    finally:
        await processes.kill_hard(process)
