"""The outbox: messages queued once, claimed with leases, a chat's messages in order, and a chat
told to wait holding back nobody else."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import delete, select

from storage import outbox
from storage.conversations import ChatRef, UserRef, get_turn, save_exchange
from storage.database import Database
from storage.outbox import OutgoingMessage
from storage.tables import DeliveryStatus, Message, OutboxMessage, utcnow

LEASE = 30.0


def _queue(db: Database, chat: int, text: str, **kw: object) -> int | None:
    return db.transact(outbox.enqueue, OutgoingMessage("telegram", chat, text, **kw))  # type: ignore[arg-type]


def _claim(db: Database, worker: str = "w1", now: datetime | None = None) -> list[str]:
    claimed = db.transact(outbox.claim, "telegram", worker, limit=10, lease_seconds=LEASE, now=now)
    return [c.text for c in claimed]


def _ids(db: Database) -> dict[str, int]:
    with db.session() as session:
        return {
            text: row_id
            for row_id, text in session.execute(select(OutboxMessage.id, OutboxMessage.text))
        }


def test_a_key_is_queued_once(database: Database) -> None:
    assert _queue(database, 1, "hi", dedupe_key="answer:7") is not None
    assert _queue(database, 1, "hi again", dedupe_key="answer:7") is None
    assert _queue(database, 1, "no key") is not None
    assert _queue(database, 1, "no key") is not None  # without a key: always

    assert database.read(outbox.queue_state).due == 3


def test_a_chats_messages_go_one_at_a_time_in_order(database: Database) -> None:
    for text in ("a1", "a2"):
        _queue(database, 1, text)
    _queue(database, 2, "b1")

    assert _claim(database) == ["a1", "b1"]
    ids = _ids(database)
    database.transact(outbox.delivered, ids["a1"], 501)
    assert _claim(database) == ["a2"]


def test_a_chat_told_to_wait_holds_back_only_itself(database: Database) -> None:
    _queue(database, 1, "a1")
    _queue(database, 1, "a2")
    _queue(database, 2, "b1")
    ids = _ids(database)
    claimed = database.transact(outbox.claim, "telegram", "w1", limit=10, lease_seconds=LEASE)
    later = utcnow() + timedelta(seconds=20)
    database.transact(outbox.retry_later, ids["a1"], later, "429", failed_attempt=False)
    database.transact(outbox.release, "w1", [c.id for c in claimed])

    assert _claim(database, "w2") == ["b1"]  # a2 waits behind a1
    state = database.read(outbox.queue_state)
    assert (state.due, state.waiting) == (2, 1)  # b1 (claimed) and a2 are due; a1 waits
    assert state.next_attempt_at is not None
    assert _claim(database, "w3", now=later + timedelta(seconds=1)) == ["a1"]


def test_a_delivered_reply_records_its_platform_id_on_the_stored_message(
    database: Database,
) -> None:
    with database.begin() as session:
        saved = save_exchange(session, ChatRef("telegram", 1), UserRef("telegram", 1), "q", "a")
    _queue(database, 1, "a", message_id=saved.reply_id, dedupe_key=f"answer:{saved.turn_id}")
    [claimed] = database.transact(outbox.claim, "telegram", "w", limit=1, lease_seconds=LEASE)

    database.transact(outbox.delivered, claimed.id, 777, message_id=saved.reply_id)

    reply = database.read(get_turn, saved.reply_id)
    assert reply is not None and reply.external_id == "777"
    with database.session() as session:
        row = session.get(OutboxMessage, claimed.id)
        assert row is not None and (row.status, row.external_id, row.text) == ("done", "777", "")
    assert _claim(database) == []


def test_a_refused_message_is_given_up_and_leaves_the_queue(database: Database) -> None:
    _queue(database, 1, "x")
    [claimed] = database.transact(outbox.claim, "telegram", "w", limit=1, lease_seconds=LEASE)

    database.transact(outbox.give_up, claimed.id, "Forbidden: bot was blocked by the user")

    with database.session() as session:
        row = session.get(OutboxMessage, claimed.id)
        assert row is not None and row.status == DeliveryStatus.FAILED.value
    assert database.read(outbox.queue_state).due == 0


def test_deleting_the_stored_reply_takes_its_pending_message_along(database: Database) -> None:
    with database.begin() as session:
        saved = save_exchange(session, ChatRef("telegram", 1), UserRef("telegram", 1), "q", "a")
    _queue(database, 1, "a", message_id=saved.reply_id)

    with database.begin() as session:  # what /forget does to the person's replies
        session.execute(delete(Message).where(Message.id == saved.reply_id))

    assert database.read(outbox.queue_state).due == 0


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.slow)])
def test_workers_claiming_at_the_same_time_never_get_the_same_message(
    database: Database,
) -> None:
    for chat in (1, 2, 3):
        _queue(database, chat, f"m{chat}")

    with database.begin() as first:
        taken = outbox.claim(first, "telegram", "w1", limit=2, lease_seconds=LEASE)
        with database.begin() as second:
            others = outbox.claim(second, "telegram", "w2", limit=10, lease_seconds=LEASE)

    assert [c.text for c in taken] == ["m1", "m2"]
    assert [c.text for c in others] == ["m3"]
