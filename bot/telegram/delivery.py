"""From the outbox to Telegram: every message the bot sends was stored first, and is sent until
Telegram takes it or refuses it for good.

`run()` claims due messages (a lease, see `storage.outbox`; the oldest pending message of each
chat, so a chat's messages keep their order), sends them, and records the outcome:

- taken: `delivered`, with Telegram's message id (the stored reply learns it too);
- 400 Bad Request, 403 Forbidden (blocked), a migrated chat: refused for good, `give_up`;
- 429 with `retry_after`: that chat waits that long (`retry_later`, in the database, so other
  replicas and a restart wait too); every other chat goes on;
- 5xx, timeouts, connection errors, a body that is not JSON, a refused token: `retry_later`
  after a pause that doubles from `send_retry_delay_seconds` up to
  `send_retry_max_delay_seconds`, until `send_give_up_after_seconds` after it was queued.

A message Telegram took is recorded (in the transaction that claims the next messages, one
write for both) before its chat's next message may go; a restart never sends it again. The one
gap no sender can close: Telegram took it and the answer was lost on the way (a timeout, the
process killed in between). Then it is sent again, and arrives twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session
from telegram import InlineKeyboardMarkup, Message, ReplyParameters
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    RetryAfter,
    TelegramError,
)
from telegram.ext import ExtBot

from bot.observability import metrics
from bot.observability.update_context import TRACKER
from bot.telegram.flood_control import NO_WAITING, retry_after_seconds
from bot.telegram.leases import LeaseKeeper
from bot.telegram.outage import OutageWatch
from bot.telegram.sending import split_message
from config import TelegramSettings
from storage import outbox
from storage.database import Database
from storage.faults import is_transient
from storage.outbox import ClaimedMessage

log = logging.getLogger(__name__)

PLATFORM = "telegram"


def chat_id_of(chat_key: str) -> int | str:
    """Telegram's chat id from our key: numeric ids as ints, `@channel` names as they are."""
    return int(chat_key) if chat_key.lstrip("-").isdigit() else chat_key


class OutboxSender:
    def __init__(
        self,
        bot: ExtBot[Any],
        db: Database,
        settings: TelegramSettings,
        watch: OutageWatch,
        worker: str,
    ) -> None:
        self.bot = bot
        self.db = db
        self.settings = settings
        self.watch = watch
        self.worker = worker
        self.leases = LeaseKeeper(
            db,
            worker,
            settings.delivery_lease_seconds,
            watch,
            renew=outbox.renew,
            release=outbox.release,
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[int, asyncio.Task[None]] = {}
        # outbox id -> what Telegram answered: recorded with the next claim, leased till then
        self._delivered: dict[int, outbox.Delivery] = {}

    def wake(self) -> None:
        """Look for due messages now (one was queued, or a chat's pause ended)."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        """Messages being sent, or sent and not yet recorded so."""
        return len(self._tasks) + len(self._delivered)

    async def run(self) -> None:
        """Claim and send until `stop()`."""
        renewing = asyncio.create_task(self.leases.run(), name="outbox-leases")
        attempt = 0
        try:
            while not self._stopping:
                self._wake.clear()
                free = self.settings.concurrent_updates - len(self._tasks)
                delivered = list(self._delivered.values())
                claimed: list[ClaimedMessage] = []
                if free > 0 or delivered:
                    try:
                        claimed = await self.db.run(
                            _record_and_claim,
                            delivered,
                            self.worker,
                            limit=max(free, 0),
                            lease_seconds=self.settings.delivery_lease_seconds,
                        )
                    except Exception as exc:
                        if not is_transient(exc):  # a bug: logged, and the loop goes on
                            log.exception("claiming work from the database failed")
                        else:
                            self.watch.failed(exc)
                        await self._pause(self.watch.delay(attempt))
                        attempt += 1
                        continue
                    attempt = 0
                    self.watch.answered()
                    self._recorded(delivered)
                    for row in claimed:
                        self._start(row)
                if (claimed and len(claimed) == free) or self._delivered:
                    continue
                await self._pause(self.settings.delivery_poll_seconds)
        finally:
            renewing.cancel()

    async def stop(self, grace_seconds: float) -> None:
        """Claim nothing more; let the sends in progress finish for up to `grace_seconds`, then
        give the leases of the rest back."""
        self._stopping = True
        self.wake()
        tasks = list(self._tasks.values())
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        delivered = list(self._delivered.values())
        if delivered:  # what Telegram took must be recorded, or the next process sends it again
            try:
                await asyncio.wait_for(
                    self.watch.until_done(lambda: self.db.run(outbox.delivered_all, delivered)),
                    grace_seconds,
                )
            except TimeoutError:  # the database is down: stopping must not wait forever
                log.warning(
                    "could not record %d messages Telegram took before stopping; the next "
                    "process sends them again",
                    len(delivered),
                )
            else:
                self._recorded(delivered)
        await self.leases.release_all()

    def _recorded(self, delivered: list[outbox.Delivery]) -> None:
        for delivery in delivered:
            self._delivered.pop(delivery.outbox_id, None)
            self.leases.held.discard(delivery.outbox_id)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _start(self, row: ClaimedMessage) -> None:
        self.leases.held.add(row.id)
        self._tasks[row.id] = asyncio.create_task(self._deliver(row), name=f"outbox-{row.id}")

    async def _deliver(self, row: ClaimedMessage) -> None:
        keep_lease = False
        try:
            await self._send(row)
            keep_lease = row.id in self._delivered  # until it is recorded
        except asyncio.CancelledError:
            keep_lease = True  # `stop()` gives its lease back
            raise
        except Exception:  # its lease runs out and it is tried again
            log.exception("outbox message %s could not be sent", row.id)
        finally:
            if not keep_lease:
                self.leases.held.discard(row.id)
            self._tasks.pop(row.id, None)
            self.wake()  # the chat's next message may go now

    async def _send(self, row: ClaimedMessage) -> None:
        pieces = split_message(row.text)
        markup = (
            None
            if row.reply_markup is None
            else InlineKeyboardMarkup.de_json(row.reply_markup, self.bot)
        )
        sent: Message | None = None
        try:
            for index in range(row.pieces_sent, len(pieces)):
                sent = await self.bot.send_message(
                    chat_id_of(row.chat_key),
                    pieces[index],
                    reply_markup=markup if index == len(pieces) - 1 else None,
                    reply_parameters=_reply_parameters(row.reply_to_external_id)
                    if index == 0
                    else None,
                    # No waiting for a paused chat: the outbox reschedules it instead.
                    rate_limit_args=NO_WAITING,
                )
                if index < len(pieces) - 1:
                    await self._record(outbox.record_progress, row.id, index + 1)
        except RetryAfter as exc:
            seconds = retry_after_seconds(exc)
            log.info("flood control, next try in %.0f s", seconds, extra={"chat_id": row.chat_key})
            await self._retry_later(row, seconds, f"flood control: {exc}", failed_attempt=False)
            return
        except (BadRequest, Forbidden, ChatMigrated) as exc:
            level = logging.INFO if isinstance(exc, Forbidden) else logging.WARNING
            log.log(
                level,
                "a chat refused a message for good: %s; given up",
                exc,
                extra={"chat_id": row.chat_key},
            )
            await self._record(outbox.give_up, row.id, f"{type(exc).__name__}: {exc}")
            return
        except TelegramError as exc:  # 5xx, timeouts, garbage, network: may pass
            await self._failed(row, exc)
            return
        assert sent is not None  # a text has at least one piece
        TRACKER.reply_sent(row.message_id)
        self._delivered[row.id] = outbox.Delivery(row.id, sent.message_id, row.message_id)

    async def _failed(self, row: ClaimedMessage, error: TelegramError) -> None:
        age = datetime.now(UTC) - row.created_at
        if age.total_seconds() > self.settings.send_give_up_after_seconds:
            log.warning(
                "a message queued %s ago still cannot be sent (%s); given up",
                age,
                error,
                extra={"chat_id": row.chat_key},
            )
            await self._record(outbox.give_up, row.id, f"{type(error).__name__}: {error}")
            return
        pause = min(
            self.settings.send_retry_delay_seconds * 2 ** min(row.attempts, 30),
            self.settings.send_retry_max_delay_seconds,
        )
        log.warning(
            "sending failed (%s); try %d in %.2f s",
            error,
            row.attempts + 2,
            pause,
            extra={"chat_id": row.chat_key},
        )
        await self._retry_later(row, pause, f"{type(error).__name__}: {error}")

    async def _retry_later(
        self, row: ClaimedMessage, seconds: float, error: str, *, failed_attempt: bool = True
    ) -> None:
        metrics.BOT_API_RETRIES.labels("sendMessage").inc()
        at = datetime.now(UTC) + timedelta(seconds=seconds)
        await self._record(outbox.retry_later, row.id, at, error, failed_attempt=failed_attempt)
        asyncio.get_running_loop().call_later(seconds, self.wake)

    async def _record(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        """Write an outcome, waiting out a database outage: what Telegram took must be recorded
        before anything else, or it would be sent again."""
        await self.watch.until_done(lambda: self.db.run(fn, *args, **kwargs))


def _reply_parameters(reply_to: str | None) -> ReplyParameters | None:
    if reply_to is None or not reply_to.isdigit():
        return None
    return ReplyParameters(int(reply_to), allow_sending_without_reply=True)


def _record_and_claim(
    session: Session,
    delivered: list[outbox.Delivery],
    worker: str,
    *,
    limit: int,
    lease_seconds: float,
) -> list[ClaimedMessage]:
    """Record what Telegram took since the last claim, then claim: one transaction."""
    outbox.delivered_all(session, delivered)
    return outbox.claim(session, PLATFORM, worker, limit=limit, lease_seconds=lease_seconds)
