"""Per-user flood control for incoming messages: at most N answered messages per sliding window.

A person over the limit is told to slow down once; further messages in the same burst get no
answer at all (a reply to each would itself be a flood), and none of them reaches the model or the
database. Refused messages do not count against the window, so a person who pauses is answered
again as soon as their oldest counted message falls out of it.

`UserRateLimiter` is what handlers call; `SlidingWindowLimiter` keeps the windows in this process
(one replica), `redis_rate_limit.RedisSlidingWindowLimiter` in Redis (shared by every replica).
`shared_limits.build_limits` picks one.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import Enum
from typing import Protocol

PRUNE_EVERY = 1000  # checks between sweeps of idle users


class Decision(Enum):
    ALLOW = "allow"
    WARN = "warn"  # over the limit: say "slow down" (once per burst)
    DROP = "drop"  # over the limit and already told


class UserRateLimiter(Protocol):
    async def check(self, key: int, event: str | None = None) -> Decision:
        """Count one message of `key` if the window has room; what to do with it. `event` names
        the message (the update's id): where the window is shared, a message checked again (by
        another replica that took its update over) is admitted again, not counted twice."""
        ...


class SlidingWindowLimiter:
    """The windows in this process's memory: for one replica, and while Redis is away."""

    def __init__(
        self,
        max_events: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_events = max_events
        self.window_seconds = window_seconds
        self.clock = clock
        self._events: dict[int, deque[float]] = {}
        self._warned: set[int] = set()
        self._checks = 0

    async def check(self, key: int, event: str | None = None) -> Decision:
        """Count one message of `key` if the window has room; what to do with it. `event` is not
        needed here: a message handled again in this process keeps its first decision (the
        dispatcher's memo), and another process never counted it in its own window."""
        return self.decide(key)

    def decide(self, key: int) -> Decision:
        """`check`, for callers without an event loop."""
        if self.max_events <= 0 or self.window_seconds <= 0:
            return Decision.ALLOW  # limiting turned off
        self._checks += 1
        if self._checks % PRUNE_EVERY == 0:
            self.forget_idle()
        now = self.clock()
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window_seconds:
            events.popleft()
        if len(events) < self.max_events:
            events.append(now)
            self._warned.discard(key)
            return Decision.ALLOW
        if key in self._warned:
            return Decision.DROP
        self._warned.add(key)
        return Decision.WARN

    def forget_idle(self) -> None:
        """Drop users with an empty window: the table must not grow with every user ever seen."""
        now = self.clock()
        for key, events in list(self._events.items()):
            if not events or now - events[-1] >= self.window_seconds:
                del self._events[key]
                self._warned.discard(key)
