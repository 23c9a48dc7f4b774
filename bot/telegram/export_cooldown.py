"""At most one /export per person per cooldown: an export reads everything stored about them,
which is the most expensive query a person can start, so a loop of /export must not keep the
database busy.

Kept in process memory, like the per-user message limit it sits beside: behind several replicas
a person could export once per replica per cooldown, which still bounds the load. A refused
/export does not count, so the wait is measured from the last export that ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

PRUNE_AT = 10_000  # entries; beyond this, expired ones are dropped


class ExportCooldown:
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._last: dict[int, float] = {}

    def try_start(self, key: int) -> float:
        """0.0 when `key` may export now (counted from now on); otherwise the seconds to wait."""
        if self.seconds <= 0:
            return 0.0  # turned off
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return self.seconds - (now - last)
        if len(self._last) >= PRUNE_AT:
            self._forget_expired(now)
        self._last[key] = now
        return 0.0

    def _forget_expired(self, now: float) -> None:
        for key, last in list(self._last.items()):
            if now - last >= self.seconds:
                del self._last[key]


def minutes(seconds: float) -> int:
    """A wait as whole minutes, rounded up (never 0 while there is a wait)."""
    return max(1, math.ceil(seconds / 60))
