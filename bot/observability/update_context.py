"""The update being handled, as logs and the reply latency need it.

`arrived()` and `stored()` are told of updates as they come in and once they are in the inbox
(by the polling loop, the webhook server): the first notes when each arrived, the second counts
them by kind. `handling()` runs in the dispatcher's task of one update: it puts the update's
id and chat (the inbox row's `chat_key`) into a context variable (every log line written while
the update is handled carries them, see `log_format`) and hands on its arrival time.
`reply_queued()` ties our stored reply's id to that arrival, and `reply_sent()` (the outbox
sender, after Telegram took the message) observes the whole latency. All of it is in-process:
an update stored by one replica and answered by another is not timed. The maps are bounded, so
updates that are never answered here (handled by another replica, or not answered at all) cost
nothing for long.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.observability import metrics

if TYPE_CHECKING:
    from storage.inbox import ReceivedUpdate

KEPT = 10_000  # arrivals and awaited replies remembered, oldest dropped first


@dataclass
class UpdateContext:
    update_id: int
    chat_key: str | None
    arrived_at: float | None  # time.monotonic() when this process stored it; None: not here
    model_version: str | None = None  # set once a reply is generated
    latency_seconds: float | None = None  # of that reply (generation and storage)


CURRENT: ContextVar[UpdateContext | None] = ContextVar("chatbot_update", default=None)


def kind_of(payload: Mapping[str, Any]) -> str:
    """The update's type: its one field besides `update_id` ("message", "callback_query", ...)."""
    return next((key for key in payload if key != "update_id"), "empty")


class _Bounded(OrderedDict[int, float]):
    def remember(self, key: int, value: float) -> None:
        self[key] = value
        while len(self) > KEPT:
            self.popitem(last=False)


class UpdateTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._arrivals = _Bounded()  # update id -> arrival
        self._awaiting = _Bounded()  # our reply's message id -> arrival of what it answers

    def arrived(self, updates: Sequence[ReceivedUpdate]) -> None:
        """Before they are stored: the dispatcher may start on them as soon as they are."""
        now = self.clock()
        for update in updates:
            self._arrivals.remember(update.update_id, now)

    def stored(self, updates: Sequence[ReceivedUpdate]) -> None:
        for update in updates:
            metrics.UPDATES.labels(kind_of(update.payload)).inc()

    def handling(self, update_id: int, chat_key: str | None) -> UpdateContext:
        """Called in the task that handles the update; its log lines carry the update and its
        chat (`chat_key`: the inbox's, read once from the update when it was received)."""
        context = UpdateContext(update_id, chat_key, self._arrivals.pop(update_id, None))
        CURRENT.set(context)
        return context

    def reply_queued(self, reply_id: int | None) -> None:
        """The update being handled got the stored reply `reply_id`, queued in the outbox."""
        context = CURRENT.get()
        if reply_id is not None and context is not None and context.arrived_at is not None:
            self._awaiting.remember(reply_id, context.arrived_at)

    def reply_sent(self, reply_id: int | None) -> None:
        """Telegram took our stored reply `reply_id` (all of it)."""
        arrived = None if reply_id is None else self._awaiting.pop(reply_id, None)
        if arrived is not None:
            metrics.REPLY_LATENCY.observe(self.clock() - arrived)


TRACKER = UpdateTracker()
