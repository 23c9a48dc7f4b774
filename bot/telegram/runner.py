"""Start and stop the bot, in polling or webhook mode, the way PTB documents for custom loops:
`initialize` -> `start` -> (updater polling | webhook server) ... and back in reverse order.

`running()` is an async context manager so that the CLI (which waits for SIGINT/SIGTERM inside
it) and the tests (which talk to a fake Bot API inside it) share one lifecycle. Leaving it stops
fetching updates, lets the updates already taken finish, and closes the HTTP clients.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import Application

from bot.telegram.application import publish_commands
from bot.telegram.state import bot_state_of
from bot.telegram.webhook import WebhookConfig, WebhookServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningBot:
    application: Application
    webhook: WebhookServer | None  # None in polling mode


@asynccontextmanager
async def running(
    application: Application, webhook: WebhookConfig | None = None
) -> AsyncIterator[RunningBot]:
    """Run `application` until the block ends. `getMe` runs first, so a token Telegram refuses
    fails here (`telegram.error.InvalidToken`) before anything else starts."""
    settings = bot_state_of(application).settings
    await application.initialize()
    try:
        await publish_commands(application, settings)
        await application.start()
        try:
            server = await _start_fetching(application, webhook, settings.poll_timeout_seconds)
            try:
                yield RunningBot(application, server)
            finally:
                if server is not None:
                    await server.stop()
                elif application.updater is not None and application.updater.running:
                    await application.updater.stop()
        finally:
            await application.stop()
    finally:
        await application.shutdown()


async def _start_fetching(
    application: Application, webhook: WebhookConfig | None, poll_timeout: int
) -> WebhookServer | None:
    if webhook is None:
        if application.updater is None:
            raise ValueError("polling needs an Application built with an Updater")
        await application.updater.start_polling(
            poll_interval=0.0,
            timeout=poll_timeout,
            allowed_updates=Update.ALL_TYPES,
            error_callback=_polling_failed,
        )
        log.info("@%s is polling for updates", application.bot.username)
        return None
    server = WebhookServer(application, webhook)
    await server.start()
    try:
        await application.bot.set_webhook(
            url=webhook.url, secret_token=webhook.secret_token, allowed_updates=Update.ALL_TYPES
        )
    except BaseException:
        await server.stop()
        raise
    log.info("@%s receives updates at its webhook", application.bot.username)
    return server


def _polling_failed(error: TelegramError) -> None:
    # PTB retries getUpdates with a growing pause; one line per failure, no traceback.
    log.warning("getUpdates failed: %s (retrying)", error)
