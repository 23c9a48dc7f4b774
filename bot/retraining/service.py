"""Retraining inside a long-running process (the Telegram bot, `chatbot scheduler`).

Jobs run in worker threads (the training itself in its own process), so the bot keeps answering.
`close()` cancels: a job in progress stops its training process and records its run as failed
("cancelled"), instead of keeping the process from exiting for the rest of its time budget.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.observability import metrics
from bot.retraining import recovery, report
from bot.retraining.errors import NotEnoughPairsError, RetrainError
from bot.retraining.job import PreparedRun, RetrainOutcome, complete_retrain, start_retrain
from bot.retraining.notify import notify_admins
from config import Settings
from storage.database import Database
from storage.errors import TrainingRunInProgressError

log = logging.getLogger(__name__)

Notifier = Callable[[str], object]


class RetrainService:
    def __init__(self, settings: Settings, db: Database, notify: Notifier | None = None) -> None:
        self.settings = settings
        self.db = db
        self.notify: Notifier = notify or (lambda text: notify_admins(settings.telegram, text))
        self._cancel = threading.Event()

    def recover(self) -> list[int]:
        """Mark runs left running by a dead process failed (call once at start)."""
        return recovery.recover(self.settings, self.db)

    def start(self, trigger: str, force: bool = False) -> PreparedRun:
        """Take the lock and choose the pairs (blocking, quick); raises what to tell the user."""
        if self._cancel.is_set():
            raise RuntimeError("the retraining service is closed")
        return start_retrain(self.settings, self.db, trigger=trigger, force=force)

    def complete(self, prepared: PreparedRun) -> RetrainOutcome:
        """Train, gate, promote or reject (blocking, minutes); cancelled by `close()`."""
        outcome = complete_retrain(self.settings, self.db, prepared, cancel=self._cancel)
        metrics.retrain_finished(outcome.status)
        return outcome

    def run_scheduled(self) -> str:
        """A scheduled run, start to end; the admins are told the result. Returns that text."""
        try:
            prepared = self.start("schedule")
        except (TrainingRunInProgressError, NotEnoughPairsError) as exc:
            text = report.skipped_text(str(exc))
            metrics.retrain_finished("skipped")
        except RetrainError as exc:  # e.g. an unreadable blocklist: its one line says which
            log.error("scheduled retraining could not start: %s", exc)
            text = report.skipped_text(f"it could not start: {exc}")
            metrics.retrain_finished("skipped")
        except Exception as exc:  # configuration, database: the admins must hear of it
            log.exception("scheduled retraining could not start")
            text = report.skipped_text(f"it could not start: {type(exc).__name__}: {exc}")
            metrics.retrain_finished("skipped")
        else:
            text = report.outcome_text(self.complete(prepared))
        log.info("%s", text.splitlines()[0])
        self.notify(text)
        return text

    def close(self) -> None:
        self._cancel.set()

    @property
    def closed(self) -> bool:
        return self._cancel.is_set()
