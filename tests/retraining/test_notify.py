"""Results to the admins over the Bot API: every admin who can be reached gets the text, and a
failure is logged without the token."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pydantic import SecretStr

from bot.retraining.notify import notify_admins
from config import TelegramSettings
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg

ADA, BEN = tg.user(900, "Ada"), tg.user(901, "Ben")


async def test_each_reachable_admin_gets_the_message(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeTelegram() as fake:
        fake.chats[ADA["id"]] = tg.private_chat(ADA)  # Ben never opened a chat with the bot
        settings = TelegramSettings(
            token=SecretStr(fake.token), base_url=fake.base_url, admin_ids=[901, 900]
        )
        with caplog.at_level(logging.WARNING):
            sent = await asyncio.to_thread(notify_admins, settings, "Retraining run 1: promoted")

    assert sent == 1
    assert [m["text"] for m in fake.sent(ADA["id"])] == ["Retraining run 1: promoted"]
    assert "could not tell admin 901 about the retraining: HTTP 400" in caplog.text
    assert fake.token not in caplog.text


def test_without_a_token_or_admins_nothing_is_sent() -> None:
    assert notify_admins(TelegramSettings(admin_ids=[900]), "text") == 0
    assert notify_admins(TelegramSettings(token=SecretStr("1:x")), "text") == 0


def test_an_unreachable_api_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    settings = TelegramSettings(
        token=SecretStr("123:secret"), base_url="http://127.0.0.1:9/bot", admin_ids=[900]
    )
    with caplog.at_level(logging.WARNING):
        assert notify_admins(settings, "text", timeout=2) == 0
    assert "could not tell admin 900" in caplog.text and "secret" not in caplog.text
