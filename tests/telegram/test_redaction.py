"""The bot token never reaches a log line: not from httpx, PTB, our messages or tracebacks."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from bot.telegram.redaction import REPLACEMENT, RedactSecrets, install
from tests.support.fake_telegram import FakeTelegram

TOKEN = "123456789:AAHfakeTOKENfakeTOKENfakeTOKEN_abc-9"


@pytest.fixture
def log_output() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of our own with one formatted handler (root's handlers are pytest's)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("redaction-test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_secrets_are_replaced_in_messages_arguments_and_tracebacks(log_output) -> None:
    logger, stream = log_output
    install([TOKEN, "webhook-secret"], logger)

    logger.info("calling https://api.telegram.org/bot%s/getMe", TOKEN)
    logger.warning("secret was webhook-secret, url-encoded token %s", TOKEN.replace(":", "%3A"))
    try:
        raise RuntimeError(f"could not reach /bot{TOKEN}/sendMessage")
    except RuntimeError:
        logger.exception("failed")

    output = stream.getvalue()
    assert TOKEN not in output and "webhook-secret" not in output and "AAHfake" not in output
    assert output.count(REPLACEMENT) == 4
    assert "RuntimeError: could not reach /bot[REDACTED]/sendMessage" in output


def test_a_longer_secret_is_replaced_whole() -> None:
    redactor = RedactSecrets(["abc", "abcdef"])

    assert redactor.redact("x abcdef y abc") == f"x {REPLACEMENT} y {REPLACEMENT}"


async def test_httpx_request_logs_of_bot_api_calls_are_redacted(
    fake: FakeTelegram, log_output
) -> None:
    logger, stream = log_output
    install([fake.token], logger)
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.addHandler(logger.handlers[0])
    httpx_logger.setLevel(logging.INFO)  # as if someone turned it back up
    try:
        async with httpx.AsyncClient() as client:
            await client.post(f"{fake.base_url}{fake.token}/getMe")
    finally:
        httpx_logger.removeHandler(logger.handlers[0])
        httpx_logger.setLevel(logging.NOTSET)

    output = stream.getvalue()
    assert "HTTP Request: POST" in output and f"/bot{REPLACEMENT}/getMe" in output
    assert fake.token not in output


def test_install_turns_httpx_request_logging_down(log_output) -> None:
    logger, _ = log_output
    install([TOKEN], logger)

    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
