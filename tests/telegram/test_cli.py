"""`chatbot telegram`: the token only from the environment or .env, checked before anything
starts; the real process answers through the Bot API and stops cleanly on SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest
from pydantic import SecretStr

from bot.app import build_app
from bot.cli import telegram as telegram_cli
from bot.cli.errors import CliError
from bot.cli.main import main
from bot.telegram.redaction import RedactSecrets
from storage import conversations
from storage.database import Database
from tests.support.fake_telegram import FakeTelegram
from tests.telegram.harness import ANN

REPO_ROOT = Path(__file__).resolve().parents[2]
WELL_FORMED = "987654321:" + "Z" * 35
T = TypeVar("T")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No CHATBOT_* variables and no developer's .env: a directory of our own."""
    for key in list(os.environ):
        if key.startswith("CHATBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    yield tmp_path


def _one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err


def test_a_missing_token_is_one_line_and_exit_2(clean_env, capsys) -> None:
    assert main(["telegram"]) == 2

    err = _one_line(capsys.readouterr().err)
    assert "CHATBOT_TELEGRAM_TOKEN" in err and err.startswith("chatbot telegram: error:")


@pytest.mark.parametrize(
    "token", ["not-a-token", "12345:short", "abc:" + "x" * 35, "123456789:" + "bad char!" * 5]
)
def test_a_malformed_token_is_one_line_exit_2_and_not_echoed(
    clean_env, capsys, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("CHATBOT_TELEGRAM_TOKEN", token)

    assert main(["telegram"]) == 2

    err = _one_line(capsys.readouterr().err)
    assert "malformed" in err and token not in err


def test_the_token_is_read_from_dotenv_too(clean_env: Path, capsys) -> None:
    (clean_env / ".env").write_text("CHATBOT_TELEGRAM_TOKEN=12345:from-dotenv\n")

    assert main(["telegram"]) == 2

    err = _one_line(capsys.readouterr().err)
    assert "malformed" in err and "from-dotenv" not in err


def test_webhook_mode_needs_a_secret_token(clean_env, capsys, monkeypatch) -> None:
    monkeypatch.setenv("CHATBOT_TELEGRAM_TOKEN", WELL_FORMED)

    assert main(["telegram", "--webhook-url", "https://bot.example.org/hook"]) == 2

    err = _one_line(capsys.readouterr().err)
    assert "secret token" in err and "CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN" in err


async def test_a_token_telegram_refuses_is_one_clear_error(make_settings) -> None:
    settings = make_settings()
    settings.telegram.token = SecretStr(WELL_FORMED)  # well formed, unknown to the server
    app = build_app(settings)

    with pytest.raises(CliError, match="Telegram refused the bot token") as refused:
        await telegram_cli._serve(app, None, RedactSecrets([WELL_FORMED]))

    assert WELL_FORMED not in str(refused.value)


# ---- the real process ----------------------------------------------------------------------------


def _env(fake: FakeTelegram, db_file: Path, model_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        CHATBOT_TELEGRAM_TOKEN=fake.token,
        CHATBOT_TELEGRAM_BASE_URL=fake.base_url,
        CHATBOT_DATABASE_URL=f"sqlite:///{db_file}",
        CHATBOT_DATA_DIR=str(db_file.parent),
        CHATBOT_MODEL_DIR=str(model_dir),
        **extra,
    )
    return env


async def _start(args: list[str], env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:  # a file, not a pipe: debug output must never block the bot
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from bot.cli import main; sys.exit(main())",
            *args,
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=out,
        )


async def _until(
    task_result: asyncio.Future[T], process: asyncio.subprocess.Process, log: Path
) -> T:
    """`task_result`, unless the process exits first (then fail with the end of its log)."""
    exited = asyncio.ensure_future(process.wait())
    waited: set[asyncio.Future[object]] = {task_result, exited}  # type: ignore[arg-type]
    done, _ = await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
    if task_result not in done:
        task_result.cancel()
        pytest.fail(
            f"chatbot telegram exited with {process.returncode}:\n{log.read_text()[-3000:]}"
        )
    exited.cancel()
    return task_result.result()


async def _stop(process: asyncio.subprocess.Process, how: signal.Signals) -> int:
    process.send_signal(how)
    try:
        return await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _stored_texts(db_file: Path, chat_id: int) -> list[str]:
    db = Database(f"sqlite:///{db_file}")
    try:
        chat = db.read(conversations.find_chat, "telegram", chat_id)
        if chat is None:
            return []
        return [t.text for t in db.read(conversations.chat_history, chat)]
    finally:
        db.dispose()


@pytest.fixture
def db_file(tmp_path: Path, sqlite_template: Path) -> Path:
    """An SQLite file at the newest schema (a copy of the migrated template)."""
    path = tmp_path / "chatbot.db"
    shutil.copyfile(sqlite_template, path)
    return path


async def test_the_real_process_answers_and_exits_0_on_sigterm(
    fake: FakeTelegram, db_file: Path, tiny_model_dir: Path
) -> None:
    log = db_file.parent / "chatbot.log"
    process = await _start(["-v", "telegram"], _env(fake, db_file, tiny_model_dir), log)
    try:
        fake.say(ANN, "hello")
        [reply] = await _until(
            asyncio.ensure_future(fake.wait_for_message(ANN["id"], timeout=120)), process, log
        )
        polls_before = len(fake.calls_to("getUpdates"))
        code = await _stop(process, signal.SIGTERM)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert reply["text"] == "Hi there!"
    assert _stored_texts(db_file, ANN["id"]) == ["hello", "Hi there!"]
    assert fake.token not in output and fake.token.split(":")[1] not in output
    assert "[REDACTED]" in output  # PTB logged the API URL at DEBUG, without the token
    last_poll = fake.calls_to("getUpdates")[-1]
    assert len(fake.calls_to("getUpdates")) > polls_before and last_poll.params["timeout"] == 0


async def test_the_real_process_in_webhook_mode_checks_the_secret_and_exits_0_on_sigint(
    fake: FakeTelegram, db_file: Path, tiny_model_dir: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "cli-secret_token"
    env = _env(fake, db_file, tiny_model_dir, CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN=secret)
    args = ["telegram", "--webhook-url", "https://bot.example.org/hook", "--port", str(port)]
    log = db_file.parent / "chatbot.log"
    local = f"http://127.0.0.1:{port}"
    process = await _start(args, env, log)
    try:
        await _until(asyncio.ensure_future(fake.wait_for("setWebhook", timeout=120)), process, log)
        async with aiohttp.ClientSession() as session, session.get(f"{local}/healthz") as health:
            assert health.status == 200
        hello = {
            "message": fake.new_message({"id": ANN["id"], "type": "private"}, ANN, text="hello")
        }
        assert await fake.deliver_to_webhook(dict(hello), url=f"{local}/hook", secret="no") == 403
        assert await fake.deliver_to_webhook(hello, url=f"{local}/hook") == 200
        [reply] = await fake.wait_for_message(ANN["id"], timeout=30)
        code = await _stop(process, signal.SIGINT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert code == 0, log.read_text()[-3000:]
    assert fake.webhook is not None and fake.webhook["secret_token"] == secret
    assert reply["text"] == "Hi there!"
    assert fake.calls_to("getUpdates", ok=None) == []
