"""Outgoing flood control: a PTB `BaseRateLimiter` that paces requests under Telegram's limits and
obeys a 429's `retry_after` for the chat it was about, not for the whole bot.

PTB's `AIORateLimiter` answers any 429 by holding back every request for `retry_after` seconds:
one chat that Telegram slows down then delays every other chat too (measured: 20 s for one chat
delayed ten others by 19 s). Telegram's flood limits are per chat (about one message a second in
a private chat, 20 a minute in a group) and for the bot as a whole (about 30 a second). So here:

- the whole bot: at most `overall_max_rate` requests to chats per second (as `AIORateLimiter`);
- each group: at most `group_max_rate` a minute (as `AIORateLimiter`);
- a 429 for a request to a chat pauses that chat only; one without a chat (e.g. answering a
  button press) pauses everything, since it cannot be pinned on a chat.

Where those limits are kept is a `FloodLimits` (`flood_limits`): in this process, or in Redis
when several replicas share the bot's limits.

`rate_limit_args` is a `RetryPolicy`: how many times a request is retried after a 429 (default
`max_retries`). With `NO_WAITING`, a request to a paused chat fails at once with `RetryAfter`
instead of waiting: the outbox sender reschedules the message in the database, and a typing
indicator is simply skipped. (An object, not a plain 0: PTB drops a `rate_limit_args` that is
falsy.)
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

from bot.observability import metrics
from bot.telegram.flood_limits import FloodLimits, LocalFloodLimits

log = logging.getLogger(__name__)

Result = bool | dict[str, Any] | list[dict[str, Any]]


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int


NO_WAITING = RetryPolicy(max_retries=0)


def retry_after_seconds(error: RetryAfter) -> float:
    """`error.retry_after` in seconds (an int today, a timedelta in a later PTB)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class ChatFloodLimiter(BaseRateLimiter[RetryPolicy]):
    def __init__(self, limits: FloodLimits | None = None, max_retries: int = 0) -> None:
        self.limits: FloodLimits = limits or LocalFloodLimits()
        self.max_retries = max_retries

    async def initialize(self) -> None:
        """Nothing to set up: Redis is connected on first use."""

    async def shutdown(self) -> None:
        await self.limits.close()

    async def paused_for(self, chat_id: object) -> float:
        """Seconds left before a request to `chat_id` (None: one to no chat) may go."""
        return await self.limits.paused_for(chat_id)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, Result]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: RetryPolicy | None,
    ) -> Result:
        retries = self.max_retries if rate_limit_args is None else rate_limit_args.max_retries
        chat_id = data.get("chat_id")
        for attempt in range(retries + 1):
            wait = await self.limits.paused_for(chat_id)
            if wait > 0:
                if retries == 0:
                    raise RetryAfter(max(1, round(wait)))
                await asyncio.sleep(wait)  # Telegram's order: this chat must wait
            try:
                await self.limits.acquire(chat_id)
                return await metrics.bot_api_call(endpoint, callback(*args, **kwargs))
            except RetryAfter as exc:
                await self.limits.pause(chat_id, retry_after_seconds(exc))
                if attempt == retries:
                    raise
                metrics.BOT_API_RETRIES.labels(endpoint).inc()
                log.info(
                    "%s: flood control, retrying in %.0f s",
                    endpoint,
                    retry_after_seconds(exc),
                    extra={"chat_id": chat_id},
                )
        raise AssertionError("unreachable")
