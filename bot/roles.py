"""Process roles: which process runs what when several share one database.

`chatbot telegram` serves updates; the retraining schedules and retention are the scheduler
role's (`SchedulerRole`). Any number of processes may take that role (`chatbot scheduler`, and
`chatbot telegram` where `retrain.run_scheduler` says so): one leads (`bot.leadership`) and runs
the schedules and retention, the others stand by and take over when it dies.

Whether `chatbot telegram` takes the role (`telegram_runs_schedules`): "auto" does with SQLite,
the single-process deployment where the bot does everything; with PostgreSQL it leaves the
role to `chatbot scheduler` processes, so that webhook replicas only serve updates (a
fine-tune would take a replica's CPU). "always" makes every bot process a candidate as well,
"never" none.
"""

from __future__ import annotations

import logging
import threading

from bot.leadership import Leadership
from bot.retention import PRUNE_EVERY_SECONDS, prune
from bot.retraining.scheduler import RetrainScheduler
from bot.retraining.service import RetrainService
from config import Settings
from storage.database import Database
from storage.leader_lock import leader_lock

log = logging.getLogger(__name__)

LOCK_NAME = "scheduler"


def telegram_runs_schedules(settings: Settings, db: Database) -> bool:
    """Whether `chatbot telegram` takes the scheduler role (see the module docstring)."""
    mode = settings.retrain.run_scheduler
    return mode == "always" or (mode == "auto" and db.dialect == "sqlite")


class SchedulerRole:
    """The retraining schedules and retention, run by this process while it leads."""

    def __init__(
        self, settings: Settings, db: Database, service: RetrainService | None = None
    ) -> None:
        self.settings, self.db = settings, db
        self.scheduler = RetrainScheduler(settings, db, service)
        self.leadership = Leadership(
            leader_lock(db, LOCK_NAME),
            on_elected=self._lead,
            on_deposed=self._stand_down,
            poll_seconds=settings.retrain.leader_poll_seconds,
            role="scheduler",
        )
        self._retention: _Retention | None = None
        self._stopping = False

    @property
    def service(self) -> RetrainService:
        return self.scheduler.service

    def start(self) -> None:
        """Campaign for leadership in the background (the first attempt at once)."""
        self.leadership.start()

    def shutdown(self) -> None:
        """Stop: a leader cancels its run in progress (recorded failed) and only then lets a
        standby lead; a run started here by an admin is cancelled too."""
        self._stopping = True
        self.leadership.stop()
        self.scheduler.shutdown()

    def _lead(self) -> None:
        self.scheduler.start()  # fails the runs dead processes left, then fires what is due
        days = self.settings.storage.retention_days
        if days is not None:
            self._retention = _Retention(self.db, days)
            self._retention.start()

    def _stand_down(self) -> None:
        if self._retention is not None:
            self._retention.stop()
            self._retention = None
        if self._stopping:
            self.scheduler.shutdown()
        else:
            self.scheduler.stop_firing()


class _Retention:
    """`storage.retention_days` applied now and every `every_seconds`, in a thread."""

    def __init__(self, db: Database, days: int, every_seconds: float = PRUNE_EVERY_SECONDS) -> None:
        self.db, self.days, self.every_seconds = db, days, every_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                prune(self.db, self.days)
            except Exception:
                log.exception("retention pass failed; trying again in %.0f s", self.every_seconds)
            self._stop.wait(self.every_seconds)
