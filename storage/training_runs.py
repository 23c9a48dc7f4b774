"""Training runs: a record of each retraining attempt, and the lock that allows one at a time.

The lock is the data itself: a partial unique index admits one row with status `running`, and
`start_run` inserts with ON CONFLICT DO NOTHING, so of two schedulers (or a scheduler and an
admin) starting at once exactly one gets a run and the other a `TrainingRunInProgressError`.
A process that dies mid-run leaves its row `running`; `fail_stale_runs` (or `start_run(...,
stale_after=...)`) marks such rows failed so the lock cannot stay stuck forever.

The process running a run refreshes its `heartbeat_at` every few seconds (`beat`); a run whose
heartbeat stopped (`fail_silent_runs`) died, whichever host it ran on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.dialects import upsert_insert
from storage.errors import NotFoundError, TrainingRunInProgressError
from storage.tables import RunStatus, TrainingRun, utcnow


@dataclass(frozen=True)
class RunInfo:
    id: int
    status: str
    trigger: str | None
    started_at: datetime
    finished_at: datetime | None
    new_pairs: int | None
    total_pairs: int | None
    metrics: dict[str, Any] | None
    error: str | None
    model_version_id: int | None
    last_message_id: int | None
    last_taught_pair_id: int | None
    heartbeat_at: datetime | None = None


_COLUMNS = (
    TrainingRun.id,
    TrainingRun.status,
    TrainingRun.trigger,
    TrainingRun.started_at,
    TrainingRun.finished_at,
    TrainingRun.new_pairs,
    TrainingRun.total_pairs,
    TrainingRun.metrics,
    TrainingRun.error,
    TrainingRun.model_version_id,
    TrainingRun.last_message_id,
    TrainingRun.last_taught_pair_id,
    TrainingRun.heartbeat_at,
)
_IS_RUNNING = TrainingRun.status == RunStatus.RUNNING.value


def start_run(
    session: Session, *, trigger: str | None = None, stale_after: timedelta | None = None
) -> RunInfo:
    """Record a new running run, or raise `TrainingRunInProgressError` if one is running.

    With `stale_after`, a run that has been running longer than that is first marked failed.
    """
    if stale_after is not None:
        fail_stale_runs(session, stale_after)
    now = utcnow()
    inserted = session.execute(
        upsert_insert(session, TrainingRun)
        .values(status=RunStatus.RUNNING.value, trigger=trigger, started_at=now, heartbeat_at=now)
        .on_conflict_do_nothing(index_elements=["status"], index_where=_IS_RUNNING)
        .returning(TrainingRun.id)
    ).scalar()
    if inserted is None:
        running = running_run(session)
        since = f" since {running.started_at:%Y-%m-%d %H:%M:%S} UTC" if running else ""
        number = f" {running.id}" if running else ""
        raise TrainingRunInProgressError(f"training run{number} is already running{since}")
    return get_run(session, inserted)


def finish_run(
    session: Session,
    run_id: int,
    *,
    new_pairs: int | None = None,
    total_pairs: int | None = None,
    metrics: dict[str, Any] | None = None,
    model_version_id: int | None = None,
    last_message_id: int | None = None,
    last_taught_pair_id: int | None = None,
) -> RunInfo:
    """Mark a running run succeeded, with its counts, metrics and export watermarks."""
    _finish(
        session,
        run_id,
        status=RunStatus.SUCCEEDED.value,
        new_pairs=new_pairs,
        total_pairs=total_pairs,
        metrics=metrics,
        model_version_id=model_version_id,
        last_message_id=last_message_id,
        last_taught_pair_id=last_taught_pair_id,
    )
    return get_run(session, run_id)


def fail_run(
    session: Session, run_id: int, error: str, *, metrics: dict[str, Any] | None = None
) -> RunInfo:
    """Mark a running run failed with the error text (kept for the admin to read)."""
    _finish(
        session,
        run_id,
        status=RunStatus.FAILED.value,
        # An error text is diagnostics, not user data: make it storable rather than refuse it.
        error=error.replace("\x00", "\\0").encode("utf-8", "backslashreplace").decode("utf-8"),
        metrics=metrics,
    )
    return get_run(session, run_id)


def _finish(session: Session, run_id: int, **values: Any) -> None:
    updated = execute_dml(
        session,
        update(TrainingRun)
        .where(TrainingRun.id == run_id, _IS_RUNNING)
        .values(finished_at=utcnow(), **values)
        .execution_options(synchronize_session=False),
    )
    if updated == 0:
        raise NotFoundError(f"no running training run with id {run_id}")


def set_running_metrics(session: Session, run_id: int, metrics: dict[str, Any]) -> None:
    """Replace the metrics of a run that is still running (e.g. who runs it, its progress)."""
    updated = execute_dml(
        session,
        update(TrainingRun)
        .where(TrainingRun.id == run_id, _IS_RUNNING)
        .values(metrics=metrics)
        .execution_options(synchronize_session=False),
    )
    if updated == 0:
        raise NotFoundError(f"no running training run with id {run_id}")


def fail_stale_runs(session: Session, older_than: timedelta, *, now: datetime | None = None) -> int:
    """Mark runs running for longer than `older_than` failed (their process died); how many."""
    now = now or utcnow()
    return execute_dml(
        session,
        update(TrainingRun)
        .where(_IS_RUNNING, TrainingRun.started_at < now - older_than)
        .values(
            status=RunStatus.FAILED.value,
            finished_at=now,
            error=f"stale: still running after {older_than}; the process presumably died",
        )
        .execution_options(synchronize_session=False),
    )


def beat(session: Session, run_id: int, *, now: datetime | None = None) -> bool:
    """Refresh a running run's heartbeat; False when the run is no longer running (finished, or
    failed by another process that found its heartbeat too old)."""
    updated = execute_dml(
        session,
        update(TrainingRun)
        .where(TrainingRun.id == run_id, _IS_RUNNING)
        .values(heartbeat_at=now or utcnow())
        .execution_options(synchronize_session=False),
    )
    return updated > 0


def fail_silent_runs(
    session: Session, silent_for: timedelta, *, now: datetime | None = None
) -> list[RunInfo]:
    """Mark failed the running runs whose heartbeat is older than `silent_for` (a run from before
    heartbeats: its start); the runs as they were before."""
    now = now or utcnow()
    limit = now - silent_for
    last_sign = func.coalesce(TrainingRun.heartbeat_at, TrainingRun.started_at)
    silent = [
        RunInfo(*row)
        for row in session.execute(select(*_COLUMNS).where(_IS_RUNNING, last_sign < limit))
    ]
    for run in silent:
        last = run.heartbeat_at or run.started_at
        _finish(
            session,
            run.id,
            status=RunStatus.FAILED.value,
            error=f"its process stopped sending heartbeats (the last at {last:%Y-%m-%d %H:%M:%S}"
            f" UTC, {silent_for.total_seconds():g} s allowed): it died or lost the database",
        )
    return silent


def get_run(session: Session, run_id: int) -> RunInfo:
    row = session.execute(select(*_COLUMNS).where(TrainingRun.id == run_id)).first()
    if row is None:
        raise NotFoundError(f"no training run with id {run_id}")
    return RunInfo(*row)


def running_run(session: Session) -> RunInfo | None:
    row = session.execute(select(*_COLUMNS).where(_IS_RUNNING)).first()
    return None if row is None else RunInfo(*row)


def last_successful_run(session: Session) -> RunInfo | None:
    """The newest succeeded run: its watermarks are where the next export starts."""
    row = session.execute(
        select(*_COLUMNS)
        .where(TrainingRun.status == RunStatus.SUCCEEDED.value)
        .order_by(TrainingRun.id.desc())
        .limit(1)
    ).first()
    return None if row is None else RunInfo(*row)


def list_runs(session: Session, *, limit: int | None = None) -> list[RunInfo]:
    """Runs, newest first."""
    query = select(*_COLUMNS).order_by(TrainingRun.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return [RunInfo(*row) for row in session.execute(query)]
