"""The state behind outgoing flood control (`flood_control.ChatFloodLimiter`): the pace of the
whole bot and of each group, and the pauses Telegram ordered with a 429's `retry_after`.

`FloodLimits` is what the limiter asks; `LocalFloodLimits` keeps it in this process (one
replica), `redis_flood_limits.RedisFloodLimits` in Redis, so that N replicas together stay under
the limits Telegram applies to the bot as a whole. `shared_limits.build_limits` picks one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from aiolimiter import AsyncLimiter

FORGET_AFTER = 512  # paused chats and group limiters kept before the idle ones are dropped


class FloodLimits(Protocol):
    async def paused_for(self, chat_id: object) -> float:
        """Seconds left before a request to `chat_id` (None: one to no chat) may go."""
        ...

    async def pause(self, chat_id: object, seconds: float) -> None:
        """Hold back requests to `chat_id` (None: every request) for `seconds`."""
        ...

    async def acquire(self, chat_id: object) -> None:
        """Wait until a request to `chat_id` keeps the bot and the chat under their rates, and
        count it (a request to no chat counts against neither)."""
        ...

    async def close(self) -> None:
        """Release what the limits hold (connections)."""
        ...


def is_group(chat_id: object) -> bool:
    """Groups and channels: negative ids, or `@name` strings (as `AIORateLimiter` decides)."""
    if isinstance(chat_id, str):
        try:
            chat_id = int(chat_id)
        except ValueError:
            return True
    return isinstance(chat_id, int) and chat_id < 0


class LocalFloodLimits:
    """The limits in this process: leaky buckets (`aiolimiter`, as PTB's `AIORateLimiter`) and
    the pauses' end times."""

    def __init__(
        self,
        overall_max_rate: float = 30.0,
        group_max_rate: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._overall = AsyncLimiter(overall_max_rate, 1) if overall_max_rate > 0 else None
        self._group_max_rate = group_max_rate
        self._groups: dict[int | str, AsyncLimiter] = {}
        self.clock = clock
        self._paused_chats: dict[str, float] = {}  # chat -> monotonic time its pause ends
        self._paused_all_until = 0.0

    async def paused_for(self, chat_id: object) -> float:
        return self.paused_seconds(chat_id)

    def paused_seconds(self, chat_id: object) -> float:
        """`paused_for`, for callers without an event loop."""
        until = self._paused_all_until
        if chat_id is not None:
            until = max(until, self._paused_chats.get(str(chat_id), 0.0))
        return max(0.0, until - self.clock())

    async def pause(self, chat_id: object, seconds: float) -> None:
        until = self.clock() + seconds
        if chat_id is None:
            self._paused_all_until = max(self._paused_all_until, until)
            return
        if len(self._paused_chats) > FORGET_AFTER:
            now = self.clock()
            self._paused_chats = {k: v for k, v in self._paused_chats.items() if v > now}
        key = str(chat_id)
        self._paused_chats[key] = max(self._paused_chats.get(key, 0.0), until)

    async def acquire(self, chat_id: object) -> None:
        group = self._group_limiter(chat_id)
        if group is not None:
            await group.acquire()
        if chat_id is not None and self._overall is not None:
            await self._overall.acquire()

    async def close(self) -> None:
        """Nothing to release."""

    def _group_limiter(self, chat_id: object) -> AsyncLimiter | None:
        if self._group_max_rate <= 0 or not is_group(chat_id):
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
