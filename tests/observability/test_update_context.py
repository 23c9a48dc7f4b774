"""The update being handled: its kind read from any kind of update, its chat the inbox row's, the
reply latency timed from its arrival to its reply's send in this process only, and the
bookkeeping bounded."""

from __future__ import annotations

import contextvars

from bot.observability import metrics, update_context
from bot.observability.update_context import CURRENT, UpdateTracker, kind_of
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
        tracker.handling(payload["update_id"], "-100")
        tracker.reply_queued(reply_id)

    contextvars.copy_context().run(handle)


def test_the_kind_of_an_update_comes_from_its_json() -> None:
    assert kind_of(MESSAGE) == "message"
    assert kind_of(BUTTON) == "callback_query"
    assert kind_of({"update_id": 7}) == "empty"


def test_the_update_being_handled_carries_the_chat_key_its_inbox_row_was_stored_with() -> None:
    # The dispatcher passes the claimed row's `chat_key` (PTB's effective_chat when it was
    # received): the update's JSON is not read a second time for it.
    tracker = UpdateTracker(Clock())

    def handle(chat_key: str | None) -> tuple[str | None, str | None]:
        context = tracker.handling(5, chat_key)
        current = CURRENT.get()
        return context.chat_key, None if current is None else current.chat_key

    assert contextvars.copy_context().run(handle, "-100") == ("-100", "-100")
    assert contextvars.copy_context().run(handle, None) == (None, None)  # an inline query's


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
        return handling(tracker.handling, update_id, "1").arrived_at

    assert [arrival(i) is None for i in (0, 4, 5, update_context.KEPT + 4)] == [
        True,
        True,
        False,
        False,
    ]
