"""The inbox: updates stored once, claimed with leases, a chat's updates one at a time and in
order, however many workers claim at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from storage import inbox
from storage.database import Database
from storage.errors import DatabaseUnavailableError
from storage.inbox import ReceivedUpdate
from storage.tables import DeliveryStatus, InboxUpdate, utcnow

LEASE = 30.0


def _update(update_id: int, chat: str | None = "c1") -> ReceivedUpdate:
    return ReceivedUpdate(update_id, chat, {"update_id": update_id, "text": f"u{update_id}"})


def _store(db: Database, *updates: ReceivedUpdate) -> int:
    return db.transact(inbox.store, "telegram", list(updates))


def _claim(db: Database, worker: str, limit: int = 10) -> list[int]:
    claimed = db.transact(inbox.claim, "telegram", worker, limit=limit, lease_seconds=LEASE)
    return [c.update_id for c in claimed]


def _finish(db: Database, update_id: int) -> None:
    with db.begin() as session:
        row_id = session.execute(
            select(InboxUpdate.id).where(InboxUpdate.update_id == update_id)
        ).scalar_one()
        inbox.finish(session, row_id)


def test_an_update_delivered_twice_is_stored_once(database: Database) -> None:
    assert _store(database, _update(1), _update(2)) == 2
    assert _store(database, _update(2), _update(3)) == 1  # 2 is a redelivery

    assert database.read(inbox.pending_count) == 3
    assert _claim(database, "w1") == [1]  # one chat: only its oldest


def test_only_the_oldest_pending_update_of_each_chat_is_claimable(database: Database) -> None:
    _store(database, _update(1, "a"), _update(2, "b"), _update(3, "a"), _update(4, "b"))
    _store(database, _update(5, None), _update(6, None))  # no chat: no order to keep

    assert _claim(database, "w1") == [1, 2, 5, 6]
    assert _claim(database, "w2") == []  # a's and b's next wait for their chat's first
    _finish(database, 1)
    assert _claim(database, "w2") == [3]
    _finish(database, 2)
    _finish(database, 3)
    assert _claim(database, "w1") == [4]


def test_a_claimed_update_carries_the_chat_key_it_was_stored_with(database: Database) -> None:
    # What the handling's log lines name the chat by (no second reading of the payload).
    _store(database, _update(1, "-100"), _update(2, None))

    claimed = database.transact(inbox.claim, "telegram", "w1", limit=5, lease_seconds=LEASE)

    assert [(c.update_id, c.chat_key) for c in claimed] == [(1, "-100"), (2, None)]


def test_a_lease_that_ran_out_is_claimed_again_and_the_old_worker_loses_it(
    database: Database,
) -> None:
    _store(database, _update(1))
    [first] = database.transact(inbox.claim, "telegram", "dead", limit=5, lease_seconds=LEASE)
    assert first.attempts == 1
    assert _claim(database, "alive") == []  # leased

    later = utcnow() + timedelta(seconds=LEASE + 1)
    [again] = database.transact(
        inbox.claim, "telegram", "alive", limit=5, lease_seconds=LEASE, now=later
    )

    assert again.update_id == 1 and again.attempts == 2
    assert database.transact(inbox.renew, "dead", [first.id], lease_seconds=LEASE) == 0
    assert database.transact(inbox.renew, "alive", [again.id], lease_seconds=LEASE) == 1


def test_released_updates_are_claimable_at_once(database: Database) -> None:
    _store(database, _update(1), _update(2, "other"))
    claimed = database.transact(inbox.claim, "telegram", "stopping", limit=5, lease_seconds=LEASE)

    assert database.transact(inbox.release, "stopping", [c.id for c in claimed]) == 2

    assert _claim(database, "next") == [1, 2]


def test_a_finished_update_keeps_no_payload_and_is_pruned_later(database: Database) -> None:
    _store(database, _update(1), _update(2, "other"))
    _finish(database, 1)

    with database.session() as session:
        rows = session.execute(
            select(InboxUpdate.update_id, InboxUpdate.status, InboxUpdate.payload).order_by(
                InboxUpdate.update_id
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        (1, DeliveryStatus.DONE.value, None),
        (2, DeliveryStatus.PENDING.value, {"update_id": 2, "text": "u2"}),
    ]
    assert _store(database, _update(1)) == 0  # still recognised as a redelivery

    assert database.transact(inbox.prune, utcnow() + timedelta(seconds=1)) == 1  # not pending
    assert database.read(inbox.pending_count) == 1


def test_a_writable_database_passes_the_check(database: Database) -> None:
    inbox.ensure_writable(database)


def test_a_database_that_does_not_answer_is_one_line(tmp_path) -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseUnavailableError, match="takes no writes: ") as refused:
            inbox.ensure_writable(db)
    finally:
        db.dispose()
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.slow)])
def test_workers_claiming_at_the_same_time_skip_each_others_rows_without_waiting(
    database: Database,
) -> None:
    _store(database, _update(1, "a"), _update(2, "a"), _update(3, "b"), _update(4, "c"))

    with database.begin() as first:  # not committed yet: its rows stay locked
        taken = inbox.claim(first, "telegram", "w1", limit=2, lease_seconds=LEASE)
        with database.begin() as second:
            others = inbox.claim(second, "telegram", "w2", limit=10, lease_seconds=LEASE)

    assert [c.update_id for c in taken] == [1, 3]
    assert [c.update_id for c in others] == [4]  # not 2: chat a's first is still pending


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.slow)])
def test_a_read_only_postgres_is_refused_in_one_line(database: Database) -> None:
    options = str(database.url.query["options"]) + " -cdefault_transaction_read_only=on"
    read_only = Database(database.url.update_query_dict({"options": options}))
    try:
        with pytest.raises(DatabaseUnavailableError) as refused:
            inbox.ensure_writable(read_only)
    finally:
        read_only.dispose()

    assert str(refused.value).endswith(
        "takes no writes: cannot execute UPDATE in a read-only transaction"
    )
