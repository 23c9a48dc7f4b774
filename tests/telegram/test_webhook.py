"""Webhook mode: the secret token is required, updates arrive by POST, and /healthz answers."""

from __future__ import annotations

import aiohttp

from bot.telegram.webhook import SECRET_HEADER, WebhookConfig
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


async def test_the_health_endpoint_reports_a_running_bot(start_bot) -> None:
    async with start_bot(webhook=_config()) as bot:
        async with (
            aiohttp.ClientSession() as session,
            session.get(_local(bot, "/healthz")) as response,
        ):
            health = await response.json()

        assert response.status == 200
        assert health["status"] == "ok" and health["mode"] == "webhook"
