"""Waiting out a database that does not answer, with one log line when it stops and one when it
is back (not a traceback per message).

Everything that touches the database in the delivery path (storing updates, claiming them,
recording a sent message) reports here: `failed(error)` for an error that may pass
(`storage.faults.is_transient`), `answered()` after any success. While the database is down,
nothing is confirmed to Telegram and nothing is lost: callers keep what they hold and try again
after `delay(attempt)`, a pause that doubles up to `max_delay`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from storage.faults import describe, is_transient

log = logging.getLogger(__name__)
T = TypeVar("T")


class OutageWatch:
    def __init__(
        self,
        *,
        first_delay: float = 0.05,
        max_delay: float = 5.0,
        logger: logging.Logger = log,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.logger = logger
        self.clock = clock
        self.down_since: float | None = None
        self.outages = 0  # how many times the database went away (tests, health)

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException) -> None:
        """The database did not answer (a transient error); logged once per outage."""
        if self.down_since is not None:
            return
        self.down_since = self.clock()
        self.outages += 1
        self.logger.warning(
            "database unavailable (%s): waiting for it; updates are not confirmed to Telegram "
            "and replies wait meanwhile",
            describe(error),
        )

    def answered(self) -> None:
        """The database answered; logs the end of an outage."""
        if self.down_since is None:
            return
        lasted = self.clock() - self.down_since
        self.down_since = None
        self.logger.warning("database answers again after %.1f s; catching up", lasted)

    def delay(self, attempt: int) -> float:
        """The pause before try `attempt + 1` (0-based) while the database is down."""
        return min(self.first_delay * 2 ** min(attempt, 30), self.max_delay)

    async def until_done(self, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()` until the database answers; errors that will not pass are raised.
        Cancel the caller to stop waiting."""
        attempt = 0
        while True:
            try:
                result = await call()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.failed(exc)
                await asyncio.sleep(self.delay(attempt))
                attempt += 1
                continue
            self.answered()
            return result
