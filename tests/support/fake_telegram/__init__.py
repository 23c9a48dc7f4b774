"""A fake Telegram Bot API server and the JSON of the updates tests send through it."""

from tests.support.fake_telegram.server import DEFAULT_TOKEN, ApiCall, FakeTelegram

__all__ = ["DEFAULT_TOKEN", "ApiCall", "FakeTelegram"]
