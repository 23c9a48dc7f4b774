"""`CHATBOT_LOG_FORMAT=json`: one JSON object per line with the known fields, chats as salted
hashes, and never the token, the webhook secret or a person's message text; the redaction of
secrets holds in JSON as it does in text."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from bot.observability import log_setup
from bot.observability.log_format import JsonFormatter, chat_hash
from bot.observability.update_context import CURRENT, UpdateContext
from bot.telegram.redaction import REPLACEMENT, RedactSecrets
from tests.observability.status_http import WEBHOOK_SECRET, get_json
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.telegram import processes

TOKEN = "123456789:AAHdistinctiveTOKENxyzzy0123456789_-Q"
TEXT = "my plover quokka zebra secret sentence"  # words no log line has any reason to hold
SALT = b"test-salt"


def _logger(stream: list[str], secrets: list[str]) -> logging.Logger:
    """A logger of its own, with one handler formatting JSON (through the redaction filter)."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            stream.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter(SALT))
    handler.addFilter(RedactSecrets(secrets))
    logger = logging.getLogger(f"tests.observability.json.{len(secrets)}.{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


def test_a_json_line_carries_the_update_being_handled_and_hashes_its_chat() -> None:
    lines: list[str] = []
    log = _logger(lines, [])
    token = CURRENT.set(UpdateContext(7, "-100123", None, "v3", 0.0421))
    try:
        log.info("answered with model %s", "v3")
    finally:
        CURRENT.reset(token)
    log.warning("outside any update", extra={"chat_id": 42})

    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["message"] == "answered with model v3"
    assert first["logger"].startswith("tests.observability.json")
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert (first["update_id"], first["model_version"], first["latency_s"]) == (7, "v3", 0.0421)
    assert first["chat"] == chat_hash(SALT, "-100123") and "-100123" not in lines[0]
    assert second["chat"] == chat_hash(SALT, 42) != chat_hash(b"other", 42)
    assert "update_id" not in second


def test_secrets_are_redacted_in_json_lines_and_tracebacks() -> None:
    lines: list[str] = []
    log = _logger(lines, [TOKEN, WEBHOOK_SECRET])
    log.info("POST https://api.telegram.org/bot%s/getMe", TOKEN)
    try:
        raise RuntimeError(f"refused {WEBHOOK_SECRET}")
    except RuntimeError:
        log.exception("setWebhook failed")

    parsed = [json.loads(line) for line in lines]
    assert parsed[0]["message"] == f"POST https://api.telegram.org/bot{REPLACEMENT}/getMe"
    assert "RuntimeError: refused [REDACTED]" in parsed[1]["exception"]
    assert not any(TOKEN in line or WEBHOOK_SECRET in line for line in lines)


def test_the_salt_is_the_setting_or_one_stored_for_the_deployment(tmp_path: Path) -> None:
    assert log_setup.deployment_salt("from-settings", tmp_path) == b"from-settings"
    assert not (tmp_path / log_setup.SALT_FILE).exists()

    made = log_setup.deployment_salt(None, tmp_path)

    assert len(made) == 16 and log_setup.deployment_salt(None, tmp_path) == made
    assert (tmp_path / log_setup.SALT_FILE).stat().st_mode & 0o777 == 0o600


async def _healthy(port: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, _ = await get_json(f"http://127.0.0.1:{port}/healthz")
            if status == 200:
                return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "the webhook server never answered /healthz"
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_the_real_process_writes_json_lines_without_token_secret_or_text(
    tiny_model_dir: Path, tmp_path: Path, sqlite_template: Path
) -> None:
    database = tmp_path / "chatbot.db"
    database.write_bytes(sqlite_template.read_bytes())
    port = processes.free_port()
    log = tmp_path / "chatbot.log"
    async with FakeTelegram(token=TOKEN) as fake:
        env = processes.bot_env(
            fake,
            f"sqlite:///{database}",
            tmp_path,
            tiny_model_dir,
            CHATBOT_LOG_FORMAT="json",
            CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN=WEBHOOK_SECRET,
        )
        args = ["telegram", "--webhook-url", "https://bot.example.org/hook", "--port", str(port)]
        process = await processes.start_bot_process(args, env, log)
        try:
            await processes.unless_it_exits(_healthy(port), process, log)
            fake.route_webhook(f"http://127.0.0.1:{port}/hook")
            ann = tg.user(777001, "Ann")
            fake.say(ann, TEXT)
            fake.say(ann, "hello")
            await processes.unless_it_exits(
                fake.wait_for_message(ann["id"], 2, timeout=60), process, log
            )
            code = await processes.stop(process)
        finally:
            await processes.kill_hard(process)

    output = log.read_text()
    assert code == 0, output[-3000:]
    lines = [json.loads(line) for line in output.splitlines()]  # every line is one object
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    answered = [line for line in lines if line["message"].startswith("answered")]
    assert len(answered) == 2
    salt = (tmp_path / log_setup.SALT_FILE).read_text().strip()
    for line in answered:
        assert line["chat"] == chat_hash(bytes.fromhex(salt), ann["id"])
        assert isinstance(line["update_id"], int)
    generated = [line for line in answered if "model_version" in line]
    assert generated and all(line["latency_s"] > 0 for line in generated)
    assert TOKEN not in output and WEBHOOK_SECRET not in output
    assert "quokka" not in output and "777001" not in output
    print(f"\n{len(lines)} JSON log lines, e.g. {answered[-1]}", file=sys.stderr)
