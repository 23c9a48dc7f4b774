"""Schedule firings: each period of a stored schedule runs once, whoever fires it.

A scheduler claims a firing (schedule id, scheduled time) before running it; the primary key
admits one claim, so of two schedulers that both fire the same period (a leader that lost its
lock and has not noticed yet, or one killed after it ran a job but before it stored the job's
next run time) exactly one runs it. Old claims are forgotten after a while: only a firing that
is still due can be claimed twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.dialects import upsert_insert
from storage.tables import ScheduleFiring, utcnow


def claim_firing(session: Session, job_id: str, scheduled_at: datetime, claimed_by: str) -> bool:
    """Claim the firing of `job_id` scheduled at `scheduled_at`; False when it was claimed."""
    inserted = session.execute(
        upsert_insert(session, ScheduleFiring)
        .values(
            job_id=job_id, scheduled_at=scheduled_at, claimed_by=claimed_by, claimed_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["job_id", "scheduled_at"])
        .returning(ScheduleFiring.job_id)
    ).scalar()
    return inserted is not None


def firing_claimant(session: Session, job_id: str, scheduled_at: datetime) -> str | None:
    """Who claimed a firing; None when nobody did."""
    return session.execute(
        select(ScheduleFiring.claimed_by).where(
            ScheduleFiring.job_id == job_id, ScheduleFiring.scheduled_at == scheduled_at
        )
    ).scalar()


def forget_firings(session: Session, older_than: timedelta, *, now: datetime | None = None) -> int:
    """Delete claims made longer than `older_than` ago; how many."""
    before = (now or utcnow()) - older_than
    return execute_dml(session, delete(ScheduleFiring).where(ScheduleFiring.claimed_at < before))
