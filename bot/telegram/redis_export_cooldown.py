"""The /export cooldown in Redis, so that every replica refuses a second export within the
cooldown (`export_cooldown.LocalExportCooldown` is the same rule in one process).

A person's cooldown is one key (`<prefix>:export:<user>`) set with `SET NX PX`: only the first
of several replicas sets it, and Redis drops it when the cooldown ends (the server's clock, so
replicas with skewed clocks agree). Its value is the event that set it, so the same update
handled again (by another replica after a crash) is let through, not told to wait for itself.
While Redis does not answer, the replica decides alone (`redis_failover`).
"""

from __future__ import annotations

import math

from redis.asyncio import Redis

from bot.telegram.export_cooldown import LocalExportCooldown
from bot.telegram.redis_failover import RedisFailover

# KEYS: the cooldown. ARGV: the event, the cooldown in ms.
# Returns 0 (export now) or the ms left of the cooldown another event started. A key without an
# expiry (not written by this script) would refuse the person for good: it is replaced.
TRY_START = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 0
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return 0
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
return math.max(1, left)
"""


class RedisExportCooldown:
    def __init__(
        self,
        redis: Redis,
        prefix: str,
        seconds: float,
        failover: RedisFailover,
        local: LocalExportCooldown | None = None,
    ) -> None:
        self.prefix = prefix
        self.seconds = seconds
        self.failover = failover
        # Decides while Redis does not answer (see `redis_failover`).
        self.local = local or LocalExportCooldown(seconds)
        self._ms = max(1, math.ceil(seconds * 1000))
        self._script = redis.register_script(TRY_START)

    async def try_start(self, key: int, event: str) -> float:
        if self.seconds <= 0:
            return 0.0  # turned off
        return await self.failover.run(
            lambda: self._shared(key, event), lambda: self.local.try_start(key, event)
        )

    async def _shared(self, key: int, event: str) -> float:
        left_ms = await self._script(keys=[f"{self.prefix}:export:{key}"], args=[event, self._ms])
        return int(left_ms) / 1000
