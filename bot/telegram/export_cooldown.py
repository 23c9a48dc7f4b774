"""At most one /export per person per cooldown: an export reads everything stored about them,
which is the most expensive query a person can start, so a loop of /export must not keep the
database busy.

`ExportCooldown` is what the /export handler asks; `LocalExportCooldown` keeps the cooldowns in
this process (one replica), `redis_export_cooldown.RedisExportCooldown` in Redis, so that a
person behind N replicas still gets one export per cooldown, not N. `shared_limits.build_limits`
picks one. A refused /export does not count, so the wait is measured from the last export that
ran. The export that started a cooldown is recognised by its `event` (the update's id): the same
update handled again (after a database outage, or by another replica that took it over when
this one died) is let through again instead of being told to wait for itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

PRUNE_AT = 10_000  # entries; beyond this, expired ones are dropped


class ExportCooldown(Protocol):
    async def try_start(self, key: int, event: str) -> float:
        """0.0 when `key` may export now for `event` (the cooldown counts from now on, or from
        when `event` started it); otherwise the seconds to wait."""
        ...


class LocalExportCooldown:
    """The cooldowns in this process's memory: for one replica, and while Redis is away."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._started: dict[int, tuple[float, str]] = {}  # key -> (when, by which event)

    async def try_start(self, key: int, event: str) -> float:
        return self.decide(key, event)

    def decide(self, key: int, event: str) -> float:
        """`try_start`, for callers without an event loop."""
        if self.seconds <= 0:
            return 0.0  # turned off
        now = self.clock()
        started = self._started.get(key)
        if started is not None and now - started[0] < self.seconds:
            return 0.0 if started[1] == event else self.seconds - (now - started[0])
        if len(self._started) >= PRUNE_AT:
            self._forget_expired(now)
        self._started[key] = (now, event)
        return 0.0

    def _forget_expired(self, now: float) -> None:
        for key, (started, _event) in list(self._started.items()):
            if now - started >= self.seconds:
                del self._started[key]


def minutes(seconds: float) -> int:
    """A wait as whole minutes, rounded up (never 0 while there is a wait)."""
    return max(1, math.ceil(seconds / 60))
