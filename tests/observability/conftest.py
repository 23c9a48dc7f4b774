"""The real bot (PTB Application, dialogue service, tiny model, a migrated database) against the
fake Bot API, with its `/metrics`, `/healthz` and `/readyz` reachable over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.app import build_app
from bot.telegram import build_application, running
from bot.telegram.runner import RunningBot
from config import Settings, TelegramSettings
from storage.database import Database
from tests.observability.status_http import QUICK, webhook_config
from tests.support.fake_telegram import FakeTelegram


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def start_bot(
    fake: FakeTelegram, tiny_model_dir: Path, tmp_path: Path
) -> Callable[..., contextlib.AbstractAsyncContextManager[RunningBot]]:
    """`async with start_bot(database_url, mode) as bot:` runs the bot against `fake`, polling
    (with the status listener on a free port) or webhook (the webhook server serves them)."""

    @contextlib.asynccontextmanager
    async def start(database_url: str, mode: str, **telegram: Any) -> AsyncIterator[RunningBot]:
        settings = Settings(
            _env_file=None,
            data_dir=tmp_path,
            database_url=database_url,
            model_dir=tiny_model_dir,
            telegram_token=SecretStr(fake.token),
            telegram_base_url=fake.base_url,
            telegram=TelegramSettings(**{**QUICK, **telegram}),
        )
        app = build_app(settings)
        try:
            application = build_application(app)
            webhook = webhook_config() if mode == "webhook" else None
            port = 0 if mode == "polling" else None
            async with running(application, webhook, status_port=port) as bot:
                if bot.webhook is not None:
                    fake.route_webhook(f"http://127.0.0.1:{bot.webhook.port}/hook")
                yield bot
        finally:
            await app.close()

    return start


@pytest.fixture
def database_url(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)
