"""The real bot (PTB Application + dialogue service + tiny trained model + a migrated database)
against a fake Bot API server, one of each per test.

The migrated database is tests/conftest.py's `database`. SQLite by default; a test that
parametrizes `backend` runs on PostgreSQL too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.app import build_app
from bot.telegram import build_application, running
from bot.telegram.webhook import WebhookConfig
from config import DialogueSettings, Settings, StorageSettings, TelegramSettings
from storage.database import Database
from tests.support.fake_telegram import FakeTelegram
from tests.telegram.harness import ADMIN_ID, TEST_TELEGRAM, Harness


def local_url(port: int, webhook: WebhookConfig | None) -> str:
    """Where a webhook server started with port 0 serves its URL on this machine."""
    route = webhook.route if webhook is not None else "/"
    return f"http://127.0.0.1:{port}{route}"


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def make_settings(
    database: Database,
    tiny_model_dir: Path,
    tmp_path: Path,
    fake: FakeTelegram,
) -> Callable[..., Settings]:
    """Settings for a bot against `fake`; keyword arguments go to `TelegramSettings`. `storage`
    and `database_url` (default: `database`'s) for the tests about database faults."""

    def make(
        dialogue: DialogueSettings | None = None,
        storage: StorageSettings | None = None,
        database_url: str | None = None,
        **telegram: Any,
    ) -> Settings:
        return Settings(
            _env_file=None,
            data_dir=tmp_path,
            database_url=database_url or database.url.render_as_string(hide_password=False),
            model_dir=tiny_model_dir,
            telegram_token=SecretStr(fake.token),
            telegram_base_url=fake.base_url,
            admin_ids=[ADMIN_ID],
            db_auto_upgrade=False,
            telegram=TelegramSettings(**{**TEST_TELEGRAM, "poll_timeout_seconds": 5, **telegram}),
            dialogue=dialogue or DialogueSettings(),
            storage=storage or StorageSettings(),
        )

    return make


@pytest.fixture
def start_bot(
    fake: FakeTelegram, make_settings: Callable[..., Settings]
) -> Callable[..., contextlib.AbstractAsyncContextManager[Harness]]:
    """`async with start_bot(**telegram_settings) as bot:` runs the real bot against `fake`."""

    @contextlib.asynccontextmanager
    async def start(
        *,
        webhook: WebhookConfig | None = None,
        dialogue: DialogueSettings | None = None,
        storage: StorageSettings | None = None,
        database_url: str | None = None,
        **telegram: Any,
    ) -> AsyncIterator[Harness]:
        app = build_app(make_settings(dialogue, storage, database_url, **telegram))
        try:
            application = build_application(app)
            async with running(application, webhook) as bot:
                if bot.webhook is not None and bot.webhook.port is not None:
                    # Deliver pushed updates to it, as Telegram would.
                    fake.route_webhook(local_url(bot.webhook.port, webhook))
                yield Harness(fake, app, bot)
        finally:
            await app.close()

    return start


@pytest.fixture
async def bot(start_bot: Callable[..., Any]) -> AsyncIterator[Harness]:
    async with start_bot() as harness:
        yield harness
