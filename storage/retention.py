"""Retention: delete messages older than N days (`StorageSettings.retention_days`; off by default).

Feedback on a deleted message goes with it (ON DELETE CASCADE); a newer message that replied to
a deleted one keeps its text and loses only the link. Users, chats, taught pairs and model
versions are not messages and are kept.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.tables import Message, utcnow


def delete_messages_before(session: Session, cutoff: datetime) -> int:
    """Delete every message created before `cutoff` (aware); returns how many."""
    return execute_dml(
        session,
        delete(Message)
        .where(Message.created_at < cutoff)
        .execution_options(synchronize_session=False),
    )


def apply_retention(
    session: Session, retention_days: int | None, *, now: datetime | None = None
) -> int:
    """Delete messages older than `retention_days`; None (the default setting) deletes nothing."""
    if retention_days is None:
        return 0
    if retention_days < 0:
        raise ValueError(f"retention_days must be >= 0, not {retention_days}")
    return delete_messages_before(session, (now or utcnow()) - timedelta(days=retention_days))
