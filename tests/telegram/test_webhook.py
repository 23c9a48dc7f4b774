"""Webhook mode: the secret token is required, updates arrive by POST, and /healthz answers."""

from __future__ import annotations

import json
import logging
import time

import aiohttp
import pytest

from bot import answers
from bot.telegram import phrases
from bot.telegram.webhook import (
    MAX_JSON_DEPTH,
    SECRET_HEADER,
    ThrottledWarnings,
    WebhookConfig,
)
from tests.support.fake_telegram import updates as tg
from tests.telegram.harness import ANN, Harness

SECRET = "s3cret-Token_for-tests"


def _config() -> WebhookConfig:
    return WebhookConfig(url="https://bot.example.org/telegram/hook", secret_token=SECRET, port=0)


def _local(bot: Harness, path: str = "/telegram/hook") -> str:
    assert bot.bot.webhook is not None and bot.bot.webhook.port is not None
    return f"http://127.0.0.1:{bot.bot.webhook.port}{path}"


async def test_the_webhook_is_registered_with_its_secret_and_polling_is_off(start_bot) -> None:
    async with start_bot(webhook=_config()) as bot:
        assert bot.fake.webhook is not None
        assert bot.fake.webhook["url"] == "https://bot.example.org/telegram/hook"
        assert bot.fake.webhook["secret_token"] == SECRET
        assert bot.fake.calls_to("getUpdates", ok=None) == []
        assert bot.application.updater is None


async def test_requests_without_the_secret_are_rejected_and_with_it_answered(start_bot) -> None:
    async with start_bot(webhook=_config()) as bot:
        hello = {"message": bot.fake.new_message(tg.private_chat(ANN), ANN, text="hello")}

        assert await bot.fake.deliver_to_webhook(dict(hello), url=_local(bot), secret="") == 403
        assert (
            await bot.fake.deliver_to_webhook(dict(hello), url=_local(bot), secret="guess") == 403
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(_local(bot), json={"update_id": 99, **hello}) as response,
        ):
            assert response.status == 403  # no header at all
        await bot.settle()
        assert bot.fake.sent() == [] and bot.turns(ANN["id"]) == []

        assert await bot.fake.deliver_to_webhook(dict(hello), url=_local(bot)) == 200
        [reply] = await bot.fake.wait_for_message(ANN["id"])
        await bot.settle()

        assert reply["text"] == "Hi there!"
        assert [t.text for t in bot.turns(ANN["id"])] == ["hello", "Hi there!"]


async def test_a_body_that_is_not_an_update_is_a_bad_request(start_bot) -> None:
    async with (
        start_bot(webhook=_config()) as bot,
        aiohttp.ClientSession() as session,
        session.post(_local(bot), data="not json", headers={SECRET_HEADER: SECRET}) as response,
    ):
        assert response.status == 400


NOT_UPDATES = [
    "null",
    "[]",
    '"an update"',
    "5",
    '{"update_id": "x"}',
    '{"update_id": 1, "message": "nope"}',
    # a date no datetime holds: OverflowError (not a ValueError) deep in the library's parsing
    '{"update_id": 2, "message": {"message_id": 1, "date": 1e300, "chat": {"id": 1, '
    '"type": "private"}}}',
]


async def test_json_that_is_not_an_update_is_a_bad_request_with_one_quiet_log_line(
    start_bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with start_bot(webhook=_config()) as bot, aiohttp.ClientSession() as session:
        for body in NOT_UPDATES:
            headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
            async with session.post(_local(bot), data=body, headers=headers) as response:
                assert response.status == 400, body
        hello = {"message": bot.fake.new_message(tg.private_chat(ANN), ANN, text="hello")}
        assert await bot.fake.deliver_to_webhook(hello, url=_local(bot)) == 200
        [reply] = await bot.fake.wait_for_message(ANN["id"])

    assert reply["text"] == "Hi there!"  # the bot goes on
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage().split(":")[0] for r in loud] == [
        "webhook request with a body that is not an update"
    ]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback


async def test_the_health_endpoint_reports_a_running_bot(start_bot) -> None:
    async with start_bot(webhook=_config()) as bot:
        async with (
            aiohttp.ClientSession() as session,
            session.get(_local(bot, "/healthz")) as response,
        ):
            health = await response.json()

        assert response.status == 200
        assert health["status"] == "ok" and health["mode"] == "webhook"


async def test_a_body_nested_too_deep_is_a_bad_request_and_brackets_in_text_are_fine(
    start_bot,
) -> None:
    async with start_bot(webhook=_config()) as bot, aiohttp.ClientSession() as session:
        deep = "[" * 100_000 + "]" * 100_000
        headers = {SECRET_HEADER: SECRET, "Content-Type": "application/json"}
        async with session.post(_local(bot), data=deep, headers=headers) as response:
            assert response.status == 400
        too_deep = {"update_id": 7, "extra": json.loads("[" * (MAX_JSON_DEPTH + 1) + "]" * 65)}
        async with session.post(_local(bot), json=too_deep, headers=headers) as response:
            assert response.status == 400

        brackets = {"message": bot.fake.new_message(tg.private_chat(ANN), ANN, text="[{" * 500)}
        assert await bot.fake.deliver_to_webhook(brackets, url=_local(bot)) == 200
        [reply] = await bot.fake.wait_for_message(ANN["id"])
        assert reply["text"] == answers.NO_WORDS


async def test_refused_requests_are_logged_once_a_minute_with_how_many_were_left_out(
    start_bot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with start_bot(webhook=_config()) as bot, aiohttp.ClientSession() as session:
        for secret in ("", "guess", SECRET):
            for _ in range(5):
                headers = {SECRET_HEADER: secret} if secret else {}
                async with session.post(_local(bot), data="not json", headers=headers) as response:
                    assert response.status in (400, 403)
        async with session.get(_local(bot, "/no/such/path")) as response:
            assert response.status == 404

        def warnings() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

        assert warnings() == ["webhook request without the right secret token (127.0.0.1)"]
        assert bot.bot.webhook is not None
        refusals = bot.bot.webhook.refusals
        refusals.clock = lambda: time.monotonic() + refusals.every_seconds  # a minute later
        async with session.post(_local(bot), data="{}", headers={SECRET_HEADER: "x"}) as response:
            assert response.status == 403

        assert warnings()[1:] == [
            "webhook request without the right secret token (127.0.0.1) (and 15 more rejected "
            "requests not logged since the last such line)"
        ]


def test_throttled_warnings_count_what_they_leave_out(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = ThrottledWarnings(logging.getLogger("test.throttle"), 60.0, clock=lambda: now[0])
    logged = [throttle.warning("refused %d", n) for n in range(3)]
    now[0] = 59.9
    logged.append(throttle.warning("refused %d", 3))
    now[0] = 60.0
    logged.append(throttle.warning("refused %d", 4))
    now[0] = 200.0
    logged.append(throttle.warning("refused %d", 5))

    assert logged == [True, False, False, False, True, True]
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "refused 4 (and 3 more rejected requests not logged since the last such line)",
        "refused 5",
    ]


async def test_a_retried_post_of_a_command_is_answered_once(start_bot) -> None:
    async with start_bot(webhook=_config()) as bot:
        update = {"message": bot.fake.new_message(tg.private_chat(ANN), ANN, text="/help")}
        assert await bot.fake.deliver_to_webhook(update, url=_local(bot)) == 200
        assert await bot.fake.deliver_to_webhook(update, url=_local(bot)) == 200  # same update_id
        await bot.settle()

        assert [m["text"] for m in bot.fake.sent(ANN["id"])] == [phrases.HELP]
