"""What is recorded about a retraining run: its metrics, typed here and stored as the run's JSON,
and the writes that start and end a run that is not promoted (`versions.promote` ends the
promoted ones).

`RunMetrics.stored()` is the one place the typed metrics become JSON, right at the storage call;
`RunMetrics.from_stored` reads them back for `/status`. A `Heartbeat` keeps a run's heartbeat
fresh while it is in progress, so that other processes, on any host, can tell it is alive.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from bot.retraining import recovery
from bot.retraining.contract import TrainingSummary, WorkerResult
from bot.retraining.gate import GateDecision
from bot.retraining.pairs import LogPairs
from storage import model_versions, training_runs
from storage.database import Database
from storage.errors import NotFoundError
from storage.training_runs import RunInfo

log = logging.getLogger(__name__)


class PairCounts(BaseModel):
    """The new pairs from the logs, then (once the worker reported) what it trained on."""

    exported: int  # pairs the export chose, before masking, the blocklist and duplicates
    new: int
    kinds: dict[str, int]
    dropped: dict[str, int]  # reason -> count
    train: int | None = None
    heldout: int | None = None
    base_sample: int | None = None
    base_valid: int | None = None

    @classmethod
    def of(cls, pairs: LogPairs) -> PairCounts:
        return cls(
            exported=pairs.exported, new=len(pairs), kinds=pairs.kinds, dropped=pairs.dropped
        )


class StoredScores(BaseModel):
    base_ppl: float | None  # None: not finite (a diverged model)
    new_ppl: float | None


class RunMetrics(BaseModel):
    """A run's metrics, filled in as far as the run got (unset fields are not stored)."""

    model_config = ConfigDict(frozen=True)

    trigger: str | None = None
    parent_version: str | None = None
    pairs: PairCounts | None = None
    words_added: int | None = None
    training: TrainingSummary | None = None
    # The gate's decision (`GateDecision.as_dict`): both models' perplexities on the same
    # held-out pairs, and why the candidate was promoted or rejected.
    decision: Literal["promoted", "rejected"] | None = None
    reasons: list[str] | None = None
    active: StoredScores | None = None
    candidate: StoredScores | None = None
    tolerance: float | None = None
    base_ppl_limit: float | None = None
    candidate_version: str | None = None  # the version a promoted candidate became
    seconds: float | None = None  # the whole run

    def with_worker(self, result: WorkerResult) -> RunMetrics:
        """What the worker trained on and how long."""
        pairs = self.pairs.model_copy(update=result.pairs.model_dump()) if self.pairs else None
        return self.model_copy(
            update={"pairs": pairs, "words_added": result.words_added, "training": result.training}
        )

    def with_decision(self, decision: GateDecision) -> RunMetrics:
        return RunMetrics.model_validate({**self.stored(), **decision.as_dict()})

    def stored(self) -> dict[str, Any]:
        """The JSON the run's row holds: what was set; numbers that are not finite as null
        (PostgreSQL's JSON takes no NaN)."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def from_stored(cls, metrics: dict[str, Any] | None) -> RunMetrics | None:
        """A finished run's metrics; None for a running run's (owner, worker pid) or a damaged
        row."""
        try:
            return cls.model_validate(metrics or {})
        except ValidationError:
            return None


def start(db: Database, trigger: str) -> RunInfo:
    """Take the one-run lock (`TrainingRunInProgressError` if another run holds it), recording
    who holds it so that `recovery` can tell when that process has died."""
    with db.begin() as session:
        run = training_runs.start_run(session, trigger=trigger)
        training_runs.set_running_metrics(
            session, run.id, {"owner": recovery.owner_stamp(), "trigger": trigger}
        )
    return run


class Heartbeat:
    """Refreshes run `run_id`'s heartbeat every `every` seconds in a thread, from `with` to the
    end of the block. `lost` is set when the database says the run is no longer running: another
    process found its heartbeat too old (this process was frozen, or cut off from the database)
    and failed it, and whatever the run still does is for nothing. A database that does not
    answer is logged once and tried again at the next beat."""

    def __init__(self, db: Database, run_id: int, every: float) -> None:
        self.db, self.run_id, self.every = db, run_id, every
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"run-{run_id}-heartbeat", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        failing = False
        while not self._stop.wait(self.every):
            try:
                running = self.db.transact(training_runs.beat, self.run_id)
            except Exception as exc:
                if not failing:
                    log.warning("training run %s: heartbeat not stored (%s)", self.run_id, exc)
                failing = True
                continue
            if failing:
                log.info("training run %s: heartbeat stored again", self.run_id)
                failing = False
            if not running:
                if not self._stop.is_set():  # not simply finished just now
                    log.error(
                        "training run %s was failed by another process (its heartbeat was too "
                        "old): stopping it",
                        self.run_id,
                    )
                    self.lost.set()
                return


def record_worker_pid(db: Database, run_id: int, pid: int) -> None:
    with db.begin() as session:
        current = training_runs.get_run(session, run_id)
        training_runs.set_running_metrics(
            session, run_id, {**(current.metrics or {}), "worker_pid": pid}
        )


def finish_rejected(
    db: Database,
    run_id: int,
    *,
    previous: RunInfo | None,
    new_pairs: int,
    total_pairs: int,
    metrics: RunMetrics,
) -> None:
    """The run succeeded without a new version. The export watermarks stay where the previous
    run left them: the rejected pairs are offered again to the next run."""
    with db.begin() as session:
        training_runs.finish_run(
            session,
            run_id,
            new_pairs=new_pairs,
            total_pairs=total_pairs,
            metrics=metrics.stored(),
            last_message_id=previous.last_message_id if previous else None,
            last_taught_pair_id=previous.last_taught_pair_id if previous else None,
        )


def fail(db: Database, run_id: int, error: str, metrics: RunMetrics) -> None:
    """Record the run as failed; never raises (the run's own error is what matters)."""
    try:
        with db.begin() as session:
            training_runs.fail_run(session, run_id, error, metrics=metrics.stored())
    except NotFoundError:  # already marked failed (a recovery decided it had died)
        pass
    except Exception:
        log.exception("could not record training run %s as failed", run_id)


def active_version_name(db: Database) -> str | None:
    """The active version after a run; None when it cannot be read (the run's result stands)."""
    try:
        active = db.read(model_versions.get_active_version)
    except Exception:
        return None
    return active.name if active is not None else None
