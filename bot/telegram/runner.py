"""Start and stop the bot, in polling or webhook mode, the way PTB documents for custom loops:
`initialize` -> `start` -> (our delivery loops and the update source) ... and back in reverse.

`running()` is an async context manager so that the CLI (which waits for SIGINT/SIGTERM inside
it) and the tests (which talk to a fake Bot API inside it) share one lifecycle. Inside it run:
the outbox sender, the inbox dispatcher, the housekeeping that prunes both, and one source of
updates (the polling loop, or the webhook server). With `setup` (the default; a replica of a
larger deployment passes False) it also makes the one-time Bot API calls (`one_time_setup`: the
command menus, and `setWebhook` once the webhook server listens). Leaving it stops taking
updates, lets the updates in progress finish and the messages in progress go out (up to
`shutdown_grace_seconds` each), gives the leases of whatever is left back for the next process,
and closes the HTTP clients. Nothing stored is lost on the way: what was not handled or sent is
in the database.

`/metrics`, `/healthz` and `/readyz` are served by the webhook server, and on `status_port`
(`--metrics-port`) by a listener of their own: in polling mode the only way to reach them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from telegram.ext import Application

from bot.observability.endpoints import Status, StatusListener
from bot.telegram.delivery import OutboxSender
from bot.telegram.dispatcher import Dispatcher
from bot.telegram.housekeeping import prune_periodically
from bot.telegram.one_time_setup import WebhookTarget, publish_commands, set_webhook
from bot.telegram.polling import Poller
from bot.telegram.state import BotState, bot_state_of
from bot.telegram.status import bot_status, polling_source
from bot.telegram.webhook import WebhookConfig, WebhookServer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningBot:
    application: Application
    webhook: WebhookServer | None  # None in polling mode
    poller: Poller | None  # None in webhook mode
    status_listener: StatusListener | None = None  # with a status port

    @property
    def state(self) -> BotState:
        return bot_state_of(self.application)

    @property
    def dispatcher(self) -> Dispatcher:
        return self.state.dispatcher

    @property
    def sender(self) -> OutboxSender:
        return self.state.sender


@asynccontextmanager
async def running(
    application: Application,
    webhook: WebhookConfig | None = None,
    *,
    setup: bool = True,
    status_port: int | None = None,
    status_listen: str = "127.0.0.1",
) -> AsyncIterator[RunningBot]:
    """Run `application` until the block ends. `getMe` runs first, so a token Telegram refuses
    fails here (`telegram.error.InvalidToken`) before anything else starts. With `status_port`
    (0: any free port), `/metrics`, `/healthz` and `/readyz` are served there too."""
    state = bot_state_of(application)
    settings = state.settings
    grace = settings.shutdown_grace_seconds
    await application.initialize()
    try:
        if setup:
            await publish_commands(application.bot, settings.admin_ids)
        await application.start()
        loops = [
            asyncio.create_task(state.sender.run(), name="outbox-sender"),
            asyncio.create_task(state.dispatcher.run(), name="inbox-dispatcher"),
            asyncio.create_task(
                prune_periodically(state.app.db, settings.delivery_keep_days, state.watch),
                name="delivery-housekeeping",
            ),
        ]
        try:
            server, poller = await _start_source(application, state, webhook, setup)
            listener: StatusListener | None = None
            try:
                if status_port is not None:
                    listener = StatusListener(
                        _status(application, server, poller), status_listen, status_port
                    )
                    await listener.start()
                async with _ends_if_polling_ends(poller):
                    yield RunningBot(application, server, poller, listener)
            finally:
                if listener is not None:
                    await listener.stop()
                if server is not None:
                    await server.stop()
                if poller is not None:
                    await poller.stop()
                await state.dispatcher.stop(grace)
                await state.sender.stop(grace)
        finally:
            for loop in loops:
                loop.cancel()
            results = await asyncio.gather(*loops, return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    log.error("a delivery loop had failed", exc_info=result)
            await application.stop()
    finally:
        await application.shutdown()


@asynccontextmanager
async def _ends_if_polling_ends(poller: Poller | None) -> AsyncIterator[None]:
    """A polling loop that ended on its own (`InvalidToken`: the token was revoked, and Telegram
    answers 401/404 to every call) ends the block with that error, instead of leaving a process
    that runs on and fetches nothing. As `asyncio.timeout` does: the block's task is cancelled,
    and the cancellation becomes the error."""
    task = poller.task if poller is not None else None
    block = asyncio.current_task()
    if task is None or block is None:
        yield
        return
    failed: list[BaseException] = []

    def ended(finished: asyncio.Task[None]) -> None:
        error = None if finished.cancelled() else finished.exception()
        if error is not None:
            failed.append(error)
            block.cancel()

    task.add_done_callback(ended)
    try:
        yield
    except asyncio.CancelledError:
        if failed and block.uncancel() == 0:  # cancelled by us alone, not also from outside
            raise failed[0] from None
        raise
    finally:
        task.remove_done_callback(ended)
    if failed:  # it failed as the block was ending anyway
        block.uncancel()
        raise failed[0]


def _status(
    application: Application, server: WebhookServer | None, poller: Poller | None
) -> Status:
    if server is not None:
        return server.status
    assert poller is not None
    return bot_status(application, "polling", polling_source(poller))


async def _start_source(
    application: Application, state: BotState, webhook: WebhookConfig | None, setup: bool
) -> tuple[WebhookServer | None, Poller | None]:
    settings = state.settings
    if webhook is None:
        poller = Poller(
            application.bot,
            state.dispatcher,
            state.watch,
            poll_timeout=settings.poll_timeout_seconds,
            read_timeout=settings.request_timeout_seconds,
        )
        await poller.start()
        log.info("@%s is polling for updates", application.bot.username)
        return None, poller
    server = WebhookServer(application, webhook, state.dispatcher)
    await server.start()
    if setup:
        try:
            await set_webhook(application.bot, WebhookTarget(webhook.url, webhook.secret_token))
        except BaseException:
            await server.stop()
            raise
    log.info("@%s receives updates at its webhook", application.bot.username)
    return server, None
