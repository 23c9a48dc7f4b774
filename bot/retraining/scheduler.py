"""Retraining schedules: APScheduler 3 with its SQLAlchemy job store in the app database.

Schedules survive restarts because they live in the database (APScheduler's own table,
`apscheduler_jobs`, which its job store creates on first use). A stored job names its function
by reference (`bot.retraining.scheduler:scheduled_retrain`), with no arguments: settings (which
hold the bot token) are never pickled into the database. The function hands the run to the
`RetrainService` of the scheduler running in this process.

Daily jobs get `misfire_grace_time` (a run missed while the process was down still happens if it
starts again within the grace time), `coalesce` (several missed runs happen once) and
`max_instances=1`. A scheduler rereads the job store every `retrain.poll_seconds`, so schedules
edited by another process (`chatbot schedule add` while the bot runs) take effect without a
restart.

Only one process may run a job-running scheduler on the job store: APScheduler 3 does not
support sharing one (two schedulers run every job twice). `bot.roles.SchedulerRole` starts this
scheduler only in the process that leads (`bot.leadership`). Even so, each firing is claimed in
the database before it runs (`storage.schedule_firings`, by schedule id and scheduled time): a
leader that lost its lock and has not noticed yet, or one killed after running a job but before
storing its next run time, cannot make a period run twice. The job reads which firing it runs
from `current_firing()`.

Editing schedules (the CLI, the admin commands) goes through the running scheduler when this
process has one, else through the job store opened without running anything.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from apscheduler.events import JobExecutionEvent
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_STOPPED, BaseScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.retraining.errors import InvalidScheduleError
from bot.retraining.service import RetrainService
from config import Settings
from storage import schedule_firings
from storage.database import Database

log = logging.getLogger(__name__)
S = TypeVar("S", bound=BaseScheduler)

JOB_FUNCTION = "bot.retraining.scheduler:scheduled_retrain"
JOB_ID_PREFIX = "retrain-"
JOBS_TABLE = "apscheduler_jobs"

# The scheduler that runs jobs in this process: what `scheduled_retrain` hands the run to.
_running: RetrainScheduler | None = None
_running_lock = threading.Lock()


def scheduled_retrain() -> None:
    """The function every stored schedule runs (by reference; see the module docstring)."""
    host = _running
    if host is None:  # only a started scheduler runs jobs, and it registers itself first
        log.error("a retraining schedule fired with no scheduler running in this process")
        return
    firing = current_firing()
    if firing is not None:
        log.info("scheduled retraining (%s, due %s)", firing.job_id, f"{firing.scheduled_at:%c %Z}")
    host.service.run_scheduled()


@dataclass(frozen=True)
class Firing:
    """One period of a stored schedule: the schedule's id and the time it was due."""

    job_id: str
    scheduled_at: datetime


_firing = threading.local()


def current_firing() -> Firing | None:
    """The firing a scheduled job runs, asked from within the job; None elsewhere."""
    value: Firing | None = getattr(_firing, "value", None)
    return value


def claimant() -> str:
    """Who claims firings in the database: this host and process."""
    return f"{socket.gethostname()}:{os.getpid()}"[:128]


class _ClaimingExecutor(ThreadPoolExecutor):
    """Runs a stored schedule's firing only once this process has claimed it in the database
    (see the module docstring). `_do_submit_job` is the method APScheduler's executors
    implement; this one submits the claim and `run_job` (misfire check, events) together."""

    def __init__(self, db: Database, keep_claims: timedelta) -> None:
        super().__init__(max_workers=1)
        self.db = db
        self.keep_claims = keep_claims
        self.claimant = claimant()

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        def reported(future: Future[list[JobExecutionEvent]]) -> None:
            error = future.exception()
            if error is not None:
                self._run_job_error(job.id, error, error.__traceback__)
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(self._run_claimed, job, run_times).add_done_callback(reported)

    def _run_claimed(self, job: Job, run_times: list[datetime]) -> list[JobExecutionEvent]:
        events: list[JobExecutionEvent] = []
        for run_time in run_times:
            if not self._claim(job.id, run_time):
                continue
            _firing.value = Firing(job.id, run_time)
            try:
                events.extend(run_job(job, job._jobstore_alias, [run_time], self._logger.name))
            finally:
                _firing.value = None
        return events

    def _claim(self, job_id: str, run_time: datetime) -> bool:
        try:
            with self.db.begin() as session:
                won = schedule_firings.claim_firing(session, job_id, run_time, self.claimant)
                if won:
                    schedule_firings.forget_firings(session, self.keep_claims)
        except Exception:
            log.exception(
                "schedule %s due %s not run: its firing could not be claimed", job_id, run_time
            )
            return False
        if not won:
            log.info("schedule %s due %s: already run by another process", job_id, run_time)
        return won


@dataclass(frozen=True)
class Schedule:
    id: str
    cron: str
    next_run: datetime | None


def parse_cron(expression: str, timezone: str = "UTC") -> CronTrigger:
    """A standard 5-field crontab expression (minute hour day month weekday) that fires at
    some time, or `InvalidScheduleError` saying what is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidScheduleError(
            f"invalid cron expression {expression!r}: expected 5 fields "
            f"(minute hour day month weekday, e.g. '0 3 * * *'), got {len(fields)}"
        )
    try:
        trigger = CronTrigger.from_crontab(" ".join(fields), timezone=timezone)
    except (ValueError, LookupError) as exc:
        raise InvalidScheduleError(f"invalid cron expression {expression!r}: {exc}") from None
    # Each field can be valid and the date still never come (February 30th): stored, such a
    # schedule would sit in the list and never run.
    if trigger.get_next_fire_time(None, datetime.now(trigger.timezone)) is None:
        raise InvalidScheduleError(
            f"invalid cron expression {expression!r}: it never runs (no such date)"
        )
    return trigger


def schedule_id(expression: str) -> str:
    """The same expression always gets the same id: adding it twice keeps one schedule."""
    normalized = " ".join(expression.split())
    return JOB_ID_PREFIX + hashlib.sha1(normalized.encode()).hexdigest()[:8]


class _AppJobStore(SQLAlchemyJobStore):
    """On the app's own engine, which is the app's to dispose: APScheduler's job store disposes
    its engine on shutdown, which would also drop an in-memory SQLite database."""

    def shutdown(self) -> None:
        pass


class _PollingScheduler(BackgroundScheduler):
    """Wakes up at least every `poll_seconds` to reread its job stores: APScheduler 3 otherwise
    sleeps until the next job it knows of, and never sees jobs another process added."""

    poll_seconds: float = 30.0

    def _process_jobs(self) -> float | None:
        if self.state == STATE_STOPPED:  # woken by shutdown: due jobs are for the next start
            return None
        wait = super()._process_jobs()
        if self.state == STATE_PAUSED:  # opened for editing only
            return wait
        return self.poll_seconds if wait is None else min(wait, self.poll_seconds)


class _Editor(BaseScheduler):
    """Opens the job stores to edit schedules and never runs a job: no thread, no processing.
    (A paused `BackgroundScheduler` would process due jobs once while shutting down, and so
    consume a run that the scheduler of another process was about to make.)"""

    def shutdown(self, wait: bool = True) -> None:
        super().shutdown(wait)

    def wakeup(self) -> None:
        pass

    def _process_jobs(self) -> float | None:
        return None


class RetrainScheduler:
    def __init__(
        self, settings: Settings, db: Database, service: RetrainService | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.service = service or RetrainService(settings, db)
        self._scheduler: _PollingScheduler | None = None
        self._retired: list[ThreadPoolExecutor] = []  # of schedulers stopped without waiting

    def _build(self, kind: type[S]) -> S:
        r = self.settings.retrain
        # A claim can be made again only while its firing is still due (within the misfire
        # grace time); a week of claims is plenty and stays a few rows per schedule.
        keep_claims = max(timedelta(days=7), 2 * timedelta(seconds=r.misfire_grace_seconds))
        return kind(
            jobstores={"default": _AppJobStore(engine=self.db.engine, tablename=JOBS_TABLE)},
            executors={"default": _ClaimingExecutor(self.db, keep_claims)},
            job_defaults={
                "misfire_grace_time": r.misfire_grace_seconds,
                "coalesce": True,
                "max_instances": 1,
            },
            timezone=r.timezone,
        )

    # ---- running jobs --------------------------------------------------------------------------

    def start(self) -> None:
        """Recover dead runs, then run the stored schedules in a background thread."""
        global _running
        with _running_lock:
            if _running is not None:
                raise RuntimeError("a retraining scheduler is already running in this process")
            self.service.recover()
            self._scheduler = self._build(_PollingScheduler)
            self._scheduler.poll_seconds = self.settings.retrain.poll_seconds
            _running = self
            try:
                self._scheduler.start()
            except BaseException:
                _running = None
                raise
        log.info("retraining scheduler started: %s", self._describe())

    def stop_firing(self) -> None:
        """Fire no more schedules (this process no longer leads), without waiting: a run in
        progress goes on, and holds the one-run lock and its heartbeat meanwhile, so no other
        process starts one. `start` may be called again."""
        global _running
        with _running_lock:
            if _running is self:
                _running = None
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            self._retired.append(scheduler._lookup_executor("default"))
            scheduler.shutdown(wait=False)

    def shutdown(self) -> None:
        """Stop: a run in progress is cancelled (recorded as failed), then the thread ends."""
        global _running
        self.service.close()
        with _running_lock:
            if _running is self:
                _running = None
        if self._scheduler is not None and self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        self._scheduler = None
        retired, self._retired = self._retired, []
        for executor in retired:
            executor.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._scheduler is not None and self._scheduler.running

    def _describe(self) -> str:
        schedules = self.list()
        return ", ".join(f"{s.cron} ({s.id})" for s in schedules) if schedules else "no schedules"

    # ---- editing -------------------------------------------------------------------------------

    @contextmanager
    def _store(self) -> Iterator[BaseScheduler]:
        """The running scheduler, or the job store opened just for the edit."""
        if self._scheduler is not None and self._scheduler.running:
            yield self._scheduler
            return
        editor = self._build(_Editor)
        editor.start(paused=True)
        try:
            yield editor
        finally:
            editor.shutdown(wait=False)

    def add(self, cron: str) -> Schedule:
        """Store a schedule (an existing one with the same expression is kept as is)."""
        trigger = parse_cron(cron, self.settings.retrain.timezone)
        normalized = " ".join(cron.split())
        with self._store() as scheduler:
            job = scheduler.add_job(
                JOB_FUNCTION,
                trigger,
                id=schedule_id(normalized),
                name=normalized,
                replace_existing=True,
            )
            return Schedule(job.id, normalized, job.next_run_time)

    def replace_all(self, cron: str) -> Schedule:
        """The one schedule from now on (`/schedule <cron>`)."""
        parse_cron(cron, self.settings.retrain.timezone)  # nothing removed for a bad expression
        keep = schedule_id(cron)
        with self._store() as scheduler:
            for job in scheduler.get_jobs():
                if job.id.startswith(JOB_ID_PREFIX) and job.id != keep:
                    scheduler.remove_job(job.id)
        return self.add(cron)

    def list(self) -> list[Schedule]:
        with self._store() as scheduler:
            jobs = scheduler.get_jobs()
        return [
            Schedule(job.id, job.name, job.next_run_time)
            for job in jobs
            if job.id.startswith(JOB_ID_PREFIX)
        ]

    def remove(self, schedule: str) -> None:
        with self._store() as scheduler:
            try:
                scheduler.remove_job(schedule)
            except JobLookupError:
                raise InvalidScheduleError(f"no schedule with id {schedule!r}") from None

    def remove_all(self) -> int:
        removed = 0
        with self._store() as scheduler:
            for job in scheduler.get_jobs():
                if job.id.startswith(JOB_ID_PREFIX):
                    scheduler.remove_job(job.id)
                    removed += 1
        return removed

    def run_soon(self, schedule: str, when: datetime) -> None:
        """Move a schedule's next run to `when` (an admin's "run it now"; tests)."""
        with self._store() as scheduler:
            try:
                scheduler.modify_job(schedule, next_run_time=when)
            except JobLookupError:
                raise InvalidScheduleError(f"no schedule with id {schedule!r}") from None

    def job_options(self, schedule: str) -> dict[str, Any]:
        """How a stored schedule fires (misfire grace time, coalescing, instances)."""
        with self._store() as scheduler:
            job = scheduler.get_job(schedule)
        if job is None:
            raise InvalidScheduleError(f"no schedule with id {schedule!r}")
        return {
            "misfire_grace_time": job.misfire_grace_time,
            "coalesce": job.coalesce,
            "max_instances": job.max_instances,
            "function": job.func_ref,
        }
