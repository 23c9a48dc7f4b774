"""Long polling that confirms an update only once it is stored.

Telegram forgets an update when a getUpdates call asks for a higher `offset`. PTB's `Updater`
asks for the next offset as soon as it has fetched a batch, before anything is stored: a process
killed then loses the batch. This loop stores each batch in the inbox (`Dispatcher.accept`) and
asks for the next offset only after that committed. While the database does not answer, it
keeps the batch and tries again with a growing pause, fetching nothing more: Telegram keeps the
updates, and nothing is confirmed that is not stored. Leaving the loop (`stop()`) confirms what
was stored with one last `getUpdates(timeout=0)`, as PTB's `Updater` does.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, TelegramError

from bot.observability import metrics
from bot.observability.update_context import TRACKER
from bot.telegram.dispatcher import Dispatcher, received
from bot.telegram.outage import OutageWatch
from bot.telegram.update_batches import read_batch

log = logging.getLogger(__name__)

# Pauses after a failed getUpdates: doubled from the first up to the last.
FIRST_RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 30.0


class Poller:
    def __init__(
        self,
        bot: Bot,
        dispatcher: Dispatcher,
        watch: OutageWatch,
        *,
        poll_timeout: int,
        read_timeout: float,
    ) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self.watch = watch
        self.poll_timeout = poll_timeout
        self.read_timeout = read_timeout  # on top of the long poll's own timeout
        self.offset: int | None = None  # the next update id to ask for: all below are stored
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Delete a webhook (getUpdates refuses to run beside one), then poll in the background.
        Pending updates are kept: they are what this loop exists not to lose."""
        await self.bot.delete_webhook(drop_pending_updates=False)
        self._task = asyncio.create_task(self._run(), name="getUpdates")

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The loop, from `start()` to `stop()`: it ends on its own only with an error that
        retrying cannot cure (`InvalidToken`: Telegram answers 401 or 404 to the token)."""
        return self._task

    async def stop(self) -> None:
        """Stop fetching; confirm what was stored (a batch not yet stored is fetched again by
        the next start)."""
        if self._task is None:
            return
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        except InvalidToken:  # the runner ended with it; confirming would be refused alike
            self._task = None
            return
        except TelegramError as exc:  # the loop ended on its own (e.g. the token was revoked)
            log.warning("polling had stopped: %s", exc)
        self._task = None
        try:
            await self.bot.get_updates(
                offset=self.offset, limit=1, timeout=0, read_timeout=self.read_timeout
            )
        except TelegramError as exc:
            log.info("could not confirm the last updates (%s); they come again", exc)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                batch = await read_batch(
                    self.bot,
                    offset=self.offset,
                    timeout=self.poll_timeout,
                    read_timeout=self.poll_timeout + self.read_timeout,
                    allowed_updates=Update.ALL_TYPES,
                )
            except InvalidToken as exc:
                metrics.bot_api_error("getUpdates", exc)
                raise
            except TelegramError as exc:  # timeouts, 5xx, a Conflict with another poller
                metrics.bot_api_error("getUpdates", exc)
                metrics.BOT_API_RETRIES.labels("getUpdates").inc()
                pause = min(FIRST_RETRY_SECONDS * 2**failures, MAX_RETRY_SECONDS)
                level = logging.ERROR if isinstance(exc, Conflict) else logging.WARNING
                log.log(level, "getUpdates failed: %s (retrying in %.0f s)", exc, pause)
                failures += 1
                await asyncio.sleep(pause)
                continue
            failures = 0
            if batch.updates:
                # Stored, or we keep trying: the batch is confirmed only by the next offset.
                stored = [received(u) for u in batch.updates]
                TRACKER.arrived(stored)
                await self.watch.until_done(functools.partial(self.dispatcher.accept, stored))
            if batch.next_offset is not None:  # also past the updates nobody can read
                self.offset = batch.next_offset
