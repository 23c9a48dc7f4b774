"""The per-user sliding window in Redis, so that every replica counts a person's messages in one
window (`rate_limit.SlidingWindowLimiter` is the same rule in one process).

One Lua script per check, so the prune, count, add and warn of two replicas never interleave. A
person's window is a sorted set of message times (`<prefix>:rate:{<user>}`), their "told to slow
down" flag a key next to it; both expire a window after their last write, so idle people cost
nothing. Times are the Redis server's (`TIME`), so replicas with skewed clocks still agree.
A message's member in the set is its event (the update's id), so an update checked again by the
replica that took it over when the first one died is admitted again, not counted a second time.
"""

from __future__ import annotations

import math
import uuid

from redis.asyncio import Redis

from bot.telegram.rate_limit import Decision, SlidingWindowLimiter
from bot.telegram.redis_failover import RedisFailover

# KEYS: the window, the warned flag. ARGV: max events, window in ms, the event (a unique member).
# Returns 1 (allow), 2 (warn) or 3 (drop), as `SlidingWindowLimiter.decide`; 1 for an event
# still in the window (admitted before).
CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local max, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) < max then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  redis.call('DEL', KEYS[2])
  return 1
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', window) then
  return 2
end
return 3
"""

_DECISIONS = {1: Decision.ALLOW, 2: Decision.WARN, 3: Decision.DROP}


class RedisSlidingWindowLimiter:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        max_events: int,
        window_seconds: float,
        failover: RedisFailover,
        local: SlidingWindowLimiter | None = None,
    ) -> None:
        self.prefix = prefix
        self.max_events = max_events
        self.window_seconds = window_seconds
        self.failover = failover
        # Decides while Redis does not answer (see `redis_failover`).
        self.local = local or SlidingWindowLimiter(max_events, window_seconds)
        self._window_ms = max(1, math.ceil(window_seconds * 1000))
        self._script = redis.register_script(CHECK)

    async def check(self, key: int, event: str | None = None) -> Decision:
        """Count one message of `key` if the shared window has room; what to do with it. The
        same `event` again is admitted again while its first count is in the window."""
        if self.max_events <= 0 or self.window_seconds <= 0:
            return Decision.ALLOW  # limiting turned off
        return await self.failover.run(
            lambda: self._shared(key, event or uuid.uuid4().hex), lambda: self.local.check(key)
        )

    async def _shared(self, key: int, event: str) -> Decision:
        window = f"{self.prefix}:rate:{{{key}}}"  # {key}: both keys in one Redis Cluster slot
        answer = await self._script(
            keys=[window, f"{window}:warned"], args=[self.max_events, self._window_ms, event]
        )
        return _DECISIONS[int(answer)]
