"""The update being handled: its chat read from any kind of update, the reply latency timed from
its arrival to its reply's send in this process only, and the bookkeeping bounded."""

from __future__ import annotations

import contextvars

from bot.observability import metrics, update_context
from bot.observability.update_context import UpdateTracker, chat_of, kind_of
from storage.inbox import ReceivedUpdate

MESSAGE = {"update_id": 5, "message": {"message_id": 1, "chat": {"id": -100, "type": "group"}}}
BUTTON = {"update_id": 6, "callback_query": {"id": "q", "message": {"chat": {"id": 42}}}}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _latency_count() -> float:
    return metrics.REGISTRY.get_sample_value("chatbot_reply_latency_seconds_count") or 0.0


def _in_own_context(tracker: UpdateTracker, payload: dict, reply_id: int) -> None:
    """As the dispatcher runs it: handling in a task (context) of its own, then the reply."""

    def handle() -> None:
        tracker.handling(payload["update_id"], payload)
        tracker.reply_queued(reply_id)

    contextvars.copy_context().run(handle)


def test_the_kind_and_chat_of_an_update_come_from_its_json() -> None:
    assert (kind_of(MESSAGE), chat_of(MESSAGE)) == ("message", "-100")
    assert (kind_of(BUTTON), chat_of(BUTTON)) == ("callback_query", "42")
    assert (kind_of({"update_id": 7}), chat_of({"update_id": 7})) == ("empty", None)


def test_a_reply_is_timed_from_its_update_arrival_to_its_send() -> None:
    clock = Clock()
    tracker = UpdateTracker(clock)
    tracker.arrived([ReceivedUpdate(5, "-100", MESSAGE)])
    clock.now += 0.25
    _in_own_context(tracker, MESSAGE, reply_id=77)
    clock.now += 1.0
    before = _latency_count()

    tracker.reply_sent(None)  # a message that answers no update (a command's reply)
    tracker.reply_sent(78)  # a reply this process never queued
    tracker.reply_sent(77)
    tracker.reply_sent(77)  # a second piece of a long reply: timed once

    assert _latency_count() == before + 1


def test_an_update_that_arrived_elsewhere_is_not_timed() -> None:
    tracker = UpdateTracker(Clock())
    _in_own_context(tracker, MESSAGE, reply_id=90)  # no arrival here: another replica stored it
    before = _latency_count()

    tracker.reply_sent(90)

    assert _latency_count() == before


def test_arrivals_never_answered_are_forgotten_oldest_first() -> None:
    tracker = UpdateTracker(Clock())
    updates = [ReceivedUpdate(i, "1", {"update_id": i}) for i in range(update_context.KEPT + 5)]
    tracker.arrived(updates)

    def arrival(update_id: int) -> float | None:
        handling = contextvars.copy_context().run  # as in the dispatcher's task of the update
        return handling(tracker.handling, update_id, {"update_id": update_id}).arrived_at

    assert [arrival(i) is None for i in (0, 4, 5, update_context.KEPT + 4)] == [
        True,
        True,
        False,
        False,
    ]
