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

`rate_limit_args` is a `RetryPolicy`: how many times a request is retried after a 429 (default
`max_retries`). With `NO_WAITING`, a request to a paused chat fails at once with `RetryAfter`
instead of waiting: the outbox sender reschedules the message in the database, and a typing
indicator is simply skipped. (An object, not a plain 0: PTB drops a `rate_limit_args` that is
falsy.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiolimiter import AsyncLimiter
from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter
from telegram.warnings import PTBDeprecationWarning

log = logging.getLogger(__name__)

Result = bool | dict[str, Any] | list[dict[str, Any]]
FORGET_AFTER = 512  # paused chats and group limiters kept before the idle ones are dropped


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
    def __init__(
        self,
        overall_max_rate: float = 30.0,
        group_max_rate: float = 20.0,
        max_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._overall = AsyncLimiter(overall_max_rate, 1) if overall_max_rate > 0 else None
        self._group_max_rate = group_max_rate
        self._groups: dict[int | str, AsyncLimiter] = {}
        self.max_retries = max_retries
        self.clock = clock
        self._paused_chats: dict[str, float] = {}  # chat -> monotonic time its pause ends
        self._paused_all_until = 0.0

    async def initialize(self) -> None:
        """Nothing to set up."""

    async def shutdown(self) -> None:
        """Nothing to release."""

    def paused_for(self, chat_id: object) -> float:
        """Seconds left before a request to `chat_id` (None: one to no chat) may go."""
        until = self._paused_all_until
        if chat_id is not None:
            until = max(until, self._paused_chats.get(str(chat_id), 0.0))
        return max(0.0, until - self.clock())

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
            wait = self.paused_for(chat_id)
            if wait > 0:
                if retries == 0:
                    raise RetryAfter(max(1, round(wait)))
                await asyncio.sleep(wait)  # Telegram's order: this chat must wait
            try:
                async with self._paced(chat_id):
                    return await callback(*args, **kwargs)
            except RetryAfter as exc:
                self._pause(chat_id, retry_after_seconds(exc))
                if attempt == retries:
                    raise
                log.info(
                    "%s to chat %s: flood control, retrying in %.0f s",
                    endpoint,
                    chat_id,
                    retry_after_seconds(exc),
                )
        raise AssertionError("unreachable")

    def _pause(self, chat_id: object, seconds: float) -> None:
        until = self.clock() + seconds
        if chat_id is None:
            self._paused_all_until = max(self._paused_all_until, until)
            return
        if len(self._paused_chats) > FORGET_AFTER:
            now = self.clock()
            self._paused_chats = {k: v for k, v in self._paused_chats.items() if v > now}
        key = str(chat_id)
        self._paused_chats[key] = max(self._paused_chats.get(key, 0.0), until)

    @contextlib.asynccontextmanager
    async def _paced(self, chat_id: object) -> AsyncIterator[None]:
        group = self._group_limiter(chat_id)
        async with contextlib.AsyncExitStack() as stack:
            if group is not None:
                await stack.enter_async_context(group)
            if chat_id is not None and self._overall is not None:
                await stack.enter_async_context(self._overall)
            yield

    def _group_limiter(self, chat_id: object) -> AsyncLimiter | None:
        if self._group_max_rate <= 0 or not _is_group(chat_id):
            return None
        assert isinstance(chat_id, int | str)
        if len(self._groups) > FORGET_AFTER:
            self._groups = {
                key: limiter
                for key, limiter in self._groups.items()
                if key == chat_id or not limiter.has_capacity(limiter.max_rate)
            }
        limiter = self._groups.get(chat_id)
        if limiter is None:
            limiter = self._groups[chat_id] = AsyncLimiter(self._group_max_rate, 60)
        return limiter


def _is_group(chat_id: object) -> bool:
    """Groups and channels: negative ids, or `@name` strings (as `AIORateLimiter` decides)."""
    if isinstance(chat_id, str):
        try:
            chat_id = int(chat_id)
        except ValueError:
            return True
    return isinstance(chat_id, int) and chat_id < 0
