"""The inbox: updates stored before they are confirmed, handled by whichever process claims them.

A front end stores what the platform delivered (`store`) and only then confirms it (advances
getUpdates' offset, answers the webhook POST). Processes claim pending updates with a lease
(`claim`), keep renewing it while they work (`renew`), and mark each one `done` or `failed`. A
process that dies simply stops renewing: once its lease runs out, any process claims the update
again. Claims use `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never wait for
or take each other's rows; SQLite serialises writers anyway (`BEGIN IMMEDIATE`).

Only the oldest pending update of a chat is claimable: a chat's updates are handled one at a
time and in the platform's order, across any number of processes (the order Telegram itself
keeps for a webhook that answers only when done).

Functions take a `Session` and leave the commit to the caller (see `storage.database`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, exists, false, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased

from storage.database import Database, execute_dml
from storage.errors import DatabaseUnavailableError
from storage.faults import describe, is_transient
from storage.tables import DeliveryStatus, InboxUpdate, Platform, utcnow

_inbox = cast(Table, InboxUpdate.__table__)
PENDING = DeliveryStatus.PENDING.value


@dataclass(frozen=True)
class ReceivedUpdate:
    """An update as the platform delivered it."""

    update_id: int
    chat_key: str | None  # the chat it belongs to (its updates are handled in order), if any
    payload: dict[str, Any]


@dataclass(frozen=True)
class ClaimedUpdate:
    id: int
    update_id: int
    chat_key: str | None  # as stored (`ReceivedUpdate.chat_key`)
    payload: dict[str, Any]
    attempts: int  # claims so far, this one included


def _store_statement(insert: Callable[[Table], Any]) -> Any:
    return (
        insert(_inbox)
        .values(
            platform=bindparam("platform", type_=_inbox.c.platform.type),
            update_id=bindparam("update_id", type_=_inbox.c.update_id.type),
            chat_key=bindparam("chat_key", type_=_inbox.c.chat_key.type),
            payload=bindparam("payload", type_=_inbox.c.payload.type),
            status=PENDING,
            attempts=0,
            received_at=bindparam("received_at", type_=_inbox.c.received_at.type),
        )
        .on_conflict_do_nothing(index_elements=["platform", "update_id"])
        .returning(_inbox.c.id)
    )


# Built once, executed with parameters: every update goes through here, and building (and
# cache-keying) the statement each time cost about as much CPU as running it.
_STORE = {
    "postgresql": _store_statement(postgresql.insert),
    "sqlite": _store_statement(sqlite.insert),
}


def store(
    session: Session,
    platform: Platform | str,
    updates: Sequence[ReceivedUpdate],
    *,
    now: datetime | None = None,
) -> int:
    """Store `updates` (pending); one stored before is left as it is. How many were new."""
    if not updates:
        return 0
    received_at = now or utcnow()
    rows = [
        {
            "platform": Platform(platform).value,
            "update_id": received.update_id,
            "chat_key": received.chat_key,
            "payload": received.payload,
            "received_at": received_at,
        }
        for received in sorted(updates, key=lambda received: received.update_id)
    ]
    statement = _STORE[session.get_bind().dialect.name]
    return len(session.execute(statement, rows[0] if len(rows) == 1 else rows).all())


def claim(
    session: Session,
    platform: Platform | str,
    worker: str,
    *,
    limit: int,
    lease_seconds: float,
    now: datetime | None = None,
) -> list[ClaimedUpdate]:
    """Lease up to `limit` claimable updates to `worker`, oldest first: pending, not leased by
    anyone (or their lease ran out), and the oldest pending update of their chat."""
    if limit <= 0:
        return []
    now = now or utcnow()
    earlier = aliased(InboxUpdate)
    chat_busy = exists().where(
        earlier.platform == InboxUpdate.platform,
        earlier.chat_key == InboxUpdate.chat_key,
        earlier.status == PENDING,
        earlier.update_id < InboxUpdate.update_id,
    )
    rows = session.execute(
        select(
            InboxUpdate.id,
            InboxUpdate.update_id,
            InboxUpdate.chat_key,
            InboxUpdate.payload,
            InboxUpdate.attempts,
        )
        .where(
            InboxUpdate.platform == Platform(platform).value,
            InboxUpdate.status == PENDING,
            or_(InboxUpdate.locked_until.is_(None), InboxUpdate.locked_until <= now),
            ~chat_busy,
        )
        .order_by(InboxUpdate.update_id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=InboxUpdate)
    ).all()
    if not rows:
        return []
    ids = [row.id for row in rows]
    session.execute(
        update(_inbox)
        .where(_inbox.c.id.in_(ids))
        .values(
            claimed_by=worker,
            locked_until=now + timedelta(seconds=lease_seconds),
            attempts=_inbox.c.attempts + 1,
        )
    )
    return [
        ClaimedUpdate(row.id, row.update_id, row.chat_key, row.payload or {}, row.attempts + 1)
        for row in rows
    ]


def renew(
    session: Session,
    worker: str,
    ids: Collection[int],
    *,
    lease_seconds: float,
    now: datetime | None = None,
) -> int:
    """Extend `worker`'s leases on `ids` (those still pending and still its own); how many."""
    if not ids:
        return 0
    now = now or utcnow()
    return execute_dml(
        session,
        update(_inbox)
        .where(_inbox.c.id.in_(list(ids)), _owned_by(worker))
        .values(locked_until=now + timedelta(seconds=lease_seconds)),
    )


def release(session: Session, worker: str, ids: Collection[int]) -> int:
    """Give `worker`'s leases on `ids` up (a process stopping): claimable again at once."""
    if not ids:
        return 0
    return execute_dml(
        session,
        update(_inbox)
        .where(_inbox.c.id.in_(list(ids)), _owned_by(worker))
        .values(claimed_by=None, locked_until=None),
    )


def finish(
    session: Session,
    update_row_id: int,
    *,
    error: str | None = None,
    now: datetime | None = None,
) -> None:
    """Mark an update handled (`done`), or given up (`failed`, with `error`). Its payload, which
    holds what people wrote and their names, is dropped either way."""
    session.execute(
        update(_inbox)
        .where(_inbox.c.id == update_row_id)
        .values(
            status=DeliveryStatus.DONE.value if error is None else DeliveryStatus.FAILED.value,
            payload=None,
            chat_key=None,
            claimed_by=None,
            locked_until=None,
            finished_at=now or utcnow(),
            error=error,
        )
    )


def finish_all(
    session: Session, outcomes: Mapping[int, str | None], *, now: datetime | None = None
) -> None:
    """`finish` for many updates at once: row id -> None (done) or the reason it was given up."""
    now = now or utcnow()
    done = [row_id for row_id, error in outcomes.items() if error is None]
    if done:
        session.execute(
            update(_inbox)
            .where(_inbox.c.id.in_(done))
            .values(
                status=DeliveryStatus.DONE.value,
                payload=None,
                chat_key=None,
                claimed_by=None,
                locked_until=None,
                finished_at=now,
                error=None,
            )
        )
    for row_id, error in outcomes.items():
        if error is not None:
            finish(session, row_id, error=error, now=now)


def pending_count(session: Session, platform: Platform | str | None = None) -> int:
    """Updates stored and not yet handled."""
    query = select(func.count()).select_from(InboxUpdate).where(InboxUpdate.status == PENDING)
    if platform is not None:
        query = query.where(InboxUpdate.platform == Platform(platform).value)
    return session.execute(query).scalar_one()


def prune(session: Session, finished_before: datetime) -> int:
    """Delete handled or given-up updates received before `finished_before`; how many. They
    only serve to recognise a redelivery, which Telegram makes within a day."""
    return execute_dml(
        session,
        delete(_inbox).where(_inbox.c.status != PENDING, _inbox.c.received_at < finished_before),
    )


def check_writable(session: Session) -> None:
    """Raise the database's own error if it takes no writes (read-only file or transaction, a
    standby): an UPDATE that matches no row still needs a write transaction."""
    session.execute(update(_inbox).where(false()).values(attempts=0))


def ensure_writable(db: Database) -> None:
    """Raise a one-line `DatabaseUnavailableError` if `db` does not answer or takes no writes
    (a service that stores every update it receives cannot start on it)."""
    try:
        db.transact(check_writable)
    except SQLAlchemyError as exc:
        if not is_transient(exc):
            raise
        where = db.url.render_as_string(hide_password=True)
        raise DatabaseUnavailableError(
            f"the database at {where} takes no writes: {describe(exc)}"
        ) from exc


def _owned_by(worker: str) -> Any:
    return and_(_inbox.c.claimed_by == worker, _inbox.c.status == PENDING)
