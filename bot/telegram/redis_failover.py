"""What the shared limits do when Redis does not answer: each replica limits on its own.

Rate limits protect the bot, they are not the product: a Redis outage must not silence the bot
(fail closed) nor lift every limit (fail open). So a limit whose Redis call fails is decided by
the replica's in-process limiter instead (a person may then get up to N replicas x the limit),
and Redis is tried again at most every `retry_seconds`, not on every message (a Redis that
times out would otherwise add its timeout to every reply). One log line when Redis stops
answering and one when it answers again, not one per message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_SECONDS = 1.0


class RedisFailover:
    def __init__(
        self,
        where: str,
        retry_seconds: float = RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where  # for the log: the server, without a password
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._down_until: float | None = None  # None: Redis answered last time

    @property
    def up(self) -> bool:
        return self._down_until is None

    async def run(self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        """`shared()` (a Redis call); `local()` instead while Redis does not answer."""
        if self._down_until is not None and self.clock() < self._down_until:
            return await local()
        try:
            result = await shared()
        except (RedisError, OSError) as exc:
            if self._down_until is None:
                log.warning(
                    "Redis at %s does not answer (%s): rate limits are per replica until it does",
                    self.where,
                    _one_line(exc),
                )
            self._down_until = self.clock() + self.retry_seconds
            return await local()
        if self._down_until is not None:
            log.warning("Redis at %s answers again: rate limits are shared again", self.where)
            self._down_until = None
        return result


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
