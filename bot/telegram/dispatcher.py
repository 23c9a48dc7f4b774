"""From the inbox to PTB's handlers: updates are stored first, handled by whichever process
claims them, and marked done only after their handlers returned.

`accept()` is the front door for both ways updates arrive (the polling loop, the webhook
server): it stores them in the inbox, and only once that committed may the caller confirm them
to Telegram. `run()` claims stored updates (a lease, see `storage.inbox`), hands each to
`Application.process_update`, and marks it done. The oldest pending update of a chat is the
only claimable one, so a chat's updates are handled in order, one at a time, whichever replica
runs them; different chats run concurrently (up to `concurrent_updates`), and their decodes
share batches.

An update whose handlers returned is recorded done in the transaction that claims the next
ones (one write for both, and the chat's next update is claimable in that same transaction);
until then it stays leased to this process.

When a handler meets a database that does not answer, the error handler reports it here
(`database_fault`) instead of apologising: the update is handled again once the database is
back, and nothing was confirmed or answered on the way. Every message a handler queues while
handling an update gets a key from `send_key()` (`update:<id>:<n>`), the same each time the
update is handled, so a second run queues nothing twice; and what a handler decided in a run
that later met the outage (the sender's rate-limit slot, its claim of a command) it finds in
`memo()` in the next run, instead of deciding again (a person's retried message must not count
against their rate limit once per try).

The memo is this process's: an update that another replica takes over (this one died, or lost
its lease in a long outage) is decided again there. What must hold across replicas therefore
knows the update by its id: the shared rate limit admits an update it counted before without
counting it again (`redis_rate_limit`), and the /export cooldown lets through the update that
started it (`export_cooldown`); in one process a restart starts with empty windows anyway.
Likewise a command's claim (`storage.handled_commands`, keyed by the platform's message id and
committed before the handler runs) names the update that made it: that update handled again
(this process died between claiming and answering) runs the command, unless its answer (the
update's first key from `send_key()`, `answer_key()`) is already in the outbox; a different
update carrying the same message is a redelivery and is dropped.

So a command is answered exactly once (a reply lost on its way to Telegram aside) and its handler
runs again only when a process died after claiming it and before its answer was queued. Handlers
are written to survive that: most set state (`/reset`, `/optout`, `/schedule`) or only read, a
second `/retrain` finds the first run's lock, `/export`'s cooldown knows the update, and `/teach`
and `/rollback` queue their answer in the transaction that makes their change
(`bot.command_answer`), so a second run happens only when the change did not.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session
from telegram import Update
from telegram.ext import Application

from bot.observability.update_context import TRACKER
from bot.telegram.leases import LeaseKeeper
from bot.telegram.outage import OutageWatch
from config import TelegramSettings
from storage import inbox
from storage.database import Database
from storage.faults import describe, is_transient
from storage.inbox import ClaimedUpdate, ReceivedUpdate

log = logging.getLogger(__name__)

PLATFORM = "telegram"


# Updates this process parsed as they arrived, kept for its handlers (most claims are of updates
# the claiming process stored itself): at most this many, the oldest dropped first.
PARSED_KEPT = 1024


@dataclass(frozen=True)
class ParsedUpdate(ReceivedUpdate):
    """A received update with the `Update` the front end parsed from it, so that the process
    which claims it can skip parsing the stored payload again (the inbox stores the payload)."""

    update: Update | None = field(default=None, compare=False, repr=False)


def received(update: Update, payload: dict[str, Any] | None = None) -> ReceivedUpdate:
    """An update as the inbox stores it: `payload` is the JSON Telegram sent (default: PTB's
    own rendering of `update`, which keeps fields it does not know)."""
    chat = update.effective_chat
    return ParsedUpdate(
        update_id=update.update_id,
        chat_key=None if chat is None else str(chat.id),
        payload=payload if payload is not None else update.to_dict(),
        update=update,
    )


class Dispatcher:
    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        db: Database,
        settings: TelegramSettings,
        watch: OutageWatch,
        worker: str,
    ) -> None:
        self.application = application
        self.db = db
        self.settings = settings
        self.watch = watch
        self.worker = worker
        self.leases = LeaseKeeper(
            db,
            worker,
            settings.delivery_lease_seconds,
            watch,
            renew=inbox.renew,
            release=inbox.release,
        )
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: dict[int, asyncio.Task[None]] = {}  # inbox row id -> its handling
        self._faults: dict[int, BaseException] = {}  # update id -> the database error it met
        self._send_counters: dict[int, itertools.count[int]] = {}
        # inbox row id -> None (done) or why it was given up: recorded with the next claim
        self._finished: dict[int, str | None] = {}
        self._memos: dict[int, dict[str, Any]] = {}  # update id -> what its handlers decided
        self._parsed: OrderedDict[int, Update] = OrderedDict()  # update id -> as it arrived here
        self.handled = 0  # updates this process ran the handlers of, to the end
        self.reruns = 0  # runs of handlers again after a database outage

    # ---- the front door -------------------------------------------------------------------------

    async def accept(self, updates: Sequence[ReceivedUpdate]) -> None:
        """Store `updates` in the inbox. Returns once they are durable: only then may they be
        confirmed to Telegram. A database that does not answer raises (after telling the watch)."""
        try:
            await self.db.run(inbox.store, PLATFORM, updates)
        except Exception as exc:
            if is_transient(exc):
                self.watch.failed(exc)
            raise
        self.watch.answered()
        TRACKER.stored(updates)  # counted once durable, whichever front door they came by
        for stored in updates:
            if isinstance(stored, ParsedUpdate) and stored.update is not None:
                self._parsed[stored.update_id] = stored.update
        while len(self._parsed) > PARSED_KEPT:
            self._parsed.popitem(last=False)
        self.wake()

    def wake(self) -> None:
        """Look for claimable updates now (some were stored, or a chat's turn came)."""
        self._wake.set()

    # ---- what handlers tell us ------------------------------------------------------------------

    def database_fault(self, update: object, error: BaseException) -> None:
        """The error handler: `update` met a database that does not answer; handle it again."""
        if isinstance(update, Update):
            self._faults[update.update_id] = error

    def send_key(self, update: object) -> str | None:
        """The outbox key of the next message queued while handling `update`; None outside a
        dispatched update (then the message is queued without one)."""
        if not isinstance(update, Update):
            return None
        counter = self._send_counters.get(update.update_id)
        return None if counter is None else _send_key(update.update_id, next(counter))

    def answer_key(self, update: object) -> str | None:
        """The outbox key of the first message queued while handling `update` (a command's
        answer), without using it up; None outside a dispatched update."""
        if not isinstance(update, Update) or update.update_id not in self._send_counters:
            return None
        return _send_key(update.update_id, 0)

    def memo(self, update: object) -> dict[str, Any]:
        """What the handlers of `update` decided in an earlier run of them (this process only;
        empty at first); they write their decisions into it. Outside a dispatched update: a new,
        empty dict each time."""
        if isinstance(update, Update) and update.update_id in self._memos:
            return self._memos[update.update_id]
        return {}

    @property
    def in_flight(self) -> int:
        """Updates being handled, or handled and not yet recorded so."""
        return len(self._tasks) + len(self._finished)

    # ---- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim and handle updates until `stop()`."""
        renewing = asyncio.create_task(self.leases.run(), name="inbox-leases")
        attempt = 0
        try:
            while not self._stopping:
                self._wake.clear()
                free = self.settings.concurrent_updates - len(self._tasks)
                finished = dict(self._finished)
                claimed: list[ClaimedUpdate] = []
                if free > 0 or finished:
                    try:
                        claimed = await self.db.run(
                            _finish_and_claim,
                            finished,
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
                    self._recorded(finished)
                    for row in claimed:
                        self._start(row)
                if (claimed and len(claimed) == free) or self._finished:
                    continue  # there may be more
                await self._pause(self.settings.delivery_poll_seconds)
        finally:
            renewing.cancel()

    async def stop(self, grace_seconds: float) -> None:
        """Claim nothing more; let the updates in progress finish for up to `grace_seconds`,
        then give the leases of the unfinished ones back (another process takes them over)."""
        self._stopping = True
        self.wake()
        tasks = list(self._tasks.values())
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=grace_seconds)
            for task in unfinished:
                task.cancel()
            await asyncio.gather(*unfinished, return_exceptions=True)
        finished = dict(self._finished)
        if finished:
            try:
                await asyncio.wait_for(
                    self.watch.until_done(lambda: self.db.run(inbox.finish_all, finished)),
                    grace_seconds,
                )
            except TimeoutError:  # the database is down: they are handled again (deduplicated)
                log.warning("could not record %d handled updates before stopping", len(finished))
            else:
                self._recorded(finished)
        await self.leases.release_all()

    def _recorded(self, finished: dict[int, str | None]) -> None:
        for row_id in finished:
            self._finished.pop(row_id, None)
            self.leases.held.discard(row_id)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    def _start(self, row: ClaimedUpdate) -> None:
        self.leases.held.add(row.id)
        task = asyncio.create_task(self._handle(row), name=f"update-{row.update_id}")
        self._tasks[row.id] = task

    async def _handle(self, row: ClaimedUpdate) -> None:
        keep_lease = False
        try:
            error = await self._process(row)
            if error is not None or row.id in self.leases.held:
                self._finished[row.id] = error  # recorded with the next claim; leased till then
                keep_lease = True
        except asyncio.CancelledError:
            keep_lease = True  # `stop()` gives its lease back
            raise
        except Exception:  # its lease runs out, and it is claimed again (a few times at most)
            log.exception("update %s could not be handled; it stays in the inbox", row.update_id)
        finally:
            if not keep_lease:
                self.leases.held.discard(row.id)
            self._tasks.pop(row.id, None)
            self._send_counters.pop(row.update_id, None)
            self._faults.pop(row.update_id, None)
            self._memos.pop(row.update_id, None)
            self.wake()  # the chat's next update may be claimable now

    async def _process(self, row: ClaimedUpdate) -> str | None:
        """Run the handlers until they got through without a database outage; the reason the
        update was given up, or None."""
        TRACKER.handling(row.update_id, row.chat_key)  # log lines name the update from here on
        if row.attempts > self.settings.update_max_attempts:
            log.warning(
                "update %s was claimed %d times without being handled (a process died on it "
                "each time?); given up",
                row.update_id,
                row.attempts - 1,
            )
            return f"given up after {row.attempts - 1} claims"
        update = self._parsed.pop(row.update_id, None)
        if update is None:  # stored by another process, or before a restart
            try:
                update = Update.de_json(row.payload, self.application.bot)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                log.warning("update %s is not an update we can read: %s", row.update_id, exc)
                return f"unreadable: {exc}"
        attempt = 0
        self._memos[row.update_id] = {}
        while True:
            self._send_counters[row.update_id] = itertools.count()
            await self.application.process_update(update)
            fault = self._faults.pop(row.update_id, None)
            if fault is None:
                self.handled += 1
                return None
            self.watch.failed(fault)
            log.debug("update %s met %s; handled again later", row.update_id, describe(fault))
            await asyncio.sleep(self.watch.delay(attempt))
            attempt += 1
            self.reruns += 1
            if not await self._still_mine(row):
                return None  # another process took it over: it finishes it

    async def _still_mine(self, row: ClaimedUpdate) -> bool:
        """Wait for the database, then check that no other process claimed the update while our
        lease could not be renewed."""
        mine = await self.watch.until_done(lambda: self.leases.still_mine(row.id))
        if not mine:
            self.leases.held.discard(row.id)
            log.info("update %s was taken over by another process", row.update_id)
        return mine


def _send_key(update_id: int, n: int) -> str:
    return f"update:{update_id}:{n}"


def _finish_and_claim(
    session: Session,
    finished: dict[int, str | None],
    worker: str,
    *,
    limit: int,
    lease_seconds: float,
) -> list[ClaimedUpdate]:
    """Record the updates handled since the last claim, then claim: one transaction."""
    inbox.finish_all(session, finished)
    return inbox.claim(session, PLATFORM, worker, limit=limit, lease_seconds=lease_seconds)
