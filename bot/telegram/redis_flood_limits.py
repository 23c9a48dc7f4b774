"""Outgoing flood limits in Redis: the whole bot's pace, each group's pace, and Telegram's pauses
hold across every replica (`flood_limits.LocalFloodLimits` is the same rules in one process).

- A pace is a sliding window (a sorted set of request times): a Lua script admits a request and
  records it in one step, or answers how long to wait until the oldest leaves the window.
- A pause is a key that expires when the pause ends (`SET ... PX`, kept when a longer pause is
  already set); its time left is the key's `PTTL`.
Times come from the Redis server (`TIME`, key expiry), so replicas with skewed clocks agree.
Every key expires, so idle chats cost nothing. While Redis does not answer, the replica paces
itself (`redis_failover`).
"""

from __future__ import annotations

import asyncio
import math
import uuid

from redis.asyncio import Redis

from bot.telegram.flood_limits import LocalFloodLimits, is_group
from bot.telegram.redis_failover import RedisFailover

# KEYS: the window. ARGV: max requests, window in ms, a unique member.
# Returns 0 (admitted and counted) or the ms to wait before asking again.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < max then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil(tonumber(oldest[2]) + window - now))
"""

# KEYS: the pause. ARGV: its length in ms. A shorter pause never cuts a longer one short.
PAUSE = """
local ms = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ms then
  redis.call('SET', KEYS[1], '1', 'PX', ms)
end
return 0
"""


def window_for(rate: float, period_seconds: float) -> tuple[int, int]:
    """`rate` requests per `period_seconds` as a window that admits whole requests: (requests,
    window in ms) with the same average rate (2.5 a second: 2 per 800 ms)."""
    count = max(1, math.floor(rate))
    return count, max(1, math.ceil(period_seconds * 1000 * count / rate))


class RedisFloodLimits:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        failover: RedisFailover,
        overall_max_rate: float = 30.0,
        group_max_rate: float = 20.0,
        local: LocalFloodLimits | None = None,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.failover = failover
        # Paces and pauses while Redis does not answer (see `redis_failover`).
        self.local = local or LocalFloodLimits(overall_max_rate, group_max_rate)
        self._overall = window_for(overall_max_rate, 1) if overall_max_rate > 0 else None
        self._group = window_for(group_max_rate, 60) if group_max_rate > 0 else None
        self._admit = redis.register_script(ADMIT)
        self._pause = redis.register_script(PAUSE)

    def _pause_key(self, chat_id: object) -> str:
        return f"{self.prefix}:flood:pause:{'all' if chat_id is None else chat_id}"

    async def paused_for(self, chat_id: object) -> float:
        return await self.failover.run(
            lambda: self._paused_for(chat_id), lambda: self.local.paused_for(chat_id)
        )

    async def _paused_for(self, chat_id: object) -> float:
        keys = [self._pause_key(None)]
        if chat_id is not None:
            keys.append(self._pause_key(chat_id))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
            left_ms = await pipe.execute()
        return max(0.0, *(int(ms) / 1000 for ms in left_ms))

    async def pause(self, chat_id: object, seconds: float) -> None:
        # Kept locally too: should Redis stop answering, this replica still honours it.
        await self.local.pause(chat_id, seconds)
        ms = max(1, math.ceil(seconds * 1000))
        await self.failover.run(
            lambda: self._pause(keys=[self._pause_key(chat_id)], args=[ms]), _nothing
        )

    async def acquire(self, chat_id: object) -> None:
        await self.failover.run(lambda: self._acquire(chat_id), lambda: self.local.acquire(chat_id))

    async def _acquire(self, chat_id: object) -> None:
        # The group's pace first, then the bot's (as `LocalFloodLimits`): a request waiting for
        # its group holds no slot of the bot's.
        if self._group is not None and is_group(chat_id):
            await self._wait_for_room(f"{self.prefix}:flood:group:{chat_id}", self._group)
        if chat_id is not None and self._overall is not None:
            await self._wait_for_room(f"{self.prefix}:flood:all", self._overall)

    async def _wait_for_room(self, key: str, window: tuple[int, int]) -> None:
        while wait_ms := int(await self._admit(keys=[key], args=[*window, uuid.uuid4().hex])):
            await asyncio.sleep(wait_ms / 1000)

    async def close(self) -> None:
        await self.redis.aclose()


async def _nothing() -> None:
    return None
