"""One retraining run, from the lock to the promotion decision.

`start_retrain` (quick; raises what a user should hear at once):
  recover runs whose process died -> refuse if a run is running -> collect the new pairs since the
  last successful run and refuse if there are fewer than `min_new_pairs` (nothing is recorded) ->
  take the lock (`runs.start`, a unique index: one running run) -> make sure a version is active
  (version zero) -> collect again, now authoritatively -> split off the held-out new pairs.
`complete_retrain` (minutes; never raises for a failed run, it records it):
  write the job into a fresh work directory -> run the worker process (`process.run_worker`:
  a hard time limit, cancellation; the run's heartbeat kept fresh meanwhile) -> the gate on
  both models' perplexities -> promote (move the checkpoint into its own version directory,
  then register + activate + finish the run in one transaction) or reject (finish the run,
  keep the active model) -> remove the work directory, whatever happened.
Nothing but `versions.promote` writes outside the work directory, and the active model's
directory is only ever read, so a crash or `kill -9` at any point leaves the active model and
every earlier version as they were; the run is marked failed (and its work directory removed),
by this process if it survives or by `recovery.recover` on the next start if it does not.

A rejected run does not move the export watermarks: its pairs are offered again, with the ones
that arrive later, to the next run.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bot.retraining import gate, recovery, runs, versions
from bot.retraining.collect import allowed_new_words, check_enough, collect, split_heldout
from bot.retraining.contract import Distributed, TokenizedTurnsPair, WorkerJob
from bot.retraining.pairs import LogPair, LogPairs
from bot.retraining.process import WorkerFailed, run_worker
from bot.retraining.runs import PairCounts, RunMetrics
from config import Settings
from nlp.datasets import BUILTIN_SOURCES
from storage import training_runs
from storage.database import Database
from storage.errors import TrainingRunInProgressError
from storage.model_versions import VersionInfo
from storage.training_runs import RunInfo

log = logging.getLogger(__name__)

Status = Literal["promoted", "rejected", "failed"]


@dataclass(frozen=True)
class PreparedRun:
    """A run that holds the lock, with the pairs it will train on."""

    run: RunInfo
    parent: VersionInfo
    previous: RunInfo | None  # the last successful run: where the export started
    pairs: LogPairs
    train: list[LogPair]
    heldout: list[LogPair]
    started_at: float = field(default_factory=time.monotonic)

    def seconds(self) -> float:
        return round(time.monotonic() - self.started_at, 1)


@dataclass(frozen=True)
class RetrainOutcome:
    run_id: int
    status: Status
    parent_version: str
    active_version: str | None  # after the run
    candidate_version: str | None  # the new version's name when promoted
    metrics: RunMetrics
    error: str | None
    seconds: float

    def to_json(self) -> str:
        """What `chatbot retrain` prints."""
        return json.dumps(
            {
                "run": self.run_id,
                "status": self.status,
                "parent_version": self.parent_version,
                "active_version": self.active_version,
                "candidate_version": self.candidate_version,
                "seconds": round(self.seconds, 1),
                "error": self.error,
                "metrics": self.metrics.stored(),
            },
            indent=2,
        )


def start_retrain(
    settings: Settings, db: Database, *, trigger: str, force: bool = False
) -> PreparedRun:
    """Take the lock and choose the pairs; raises `TrainingRunInProgressError`,
    `NotEnoughPairsError` (nothing recorded) or a configuration error."""
    recovery.recover(settings, db)
    running = db.read(training_runs.running_run)
    if running is not None:
        raise TrainingRunInProgressError(
            f"a retraining is already running (run {running.id}, started "
            f"{running.started_at:%Y-%m-%d %H:%M:%S} UTC)"
        )
    previous = db.read(training_runs.last_successful_run)
    check_enough(
        collect(settings, db, previous, versions.active_checkpoint_dir(settings, db)),
        settings,
        force,
    )

    run = runs.start(db, trigger)
    try:
        parent = versions.ensure_active_version(settings, db)
        previous = db.read(training_runs.last_successful_run)
        pairs = collect(settings, db, previous, Path(parent.checkpoint_path))
        check_enough(pairs, settings, force)
        train, heldout = split_heldout(pairs.pairs, settings.retrain.heldout_fraction)
    except BaseException as exc:
        runs.fail(db, run.id, _error_text(exc), RunMetrics(trigger=trigger))
        raise
    log.info(
        "training run %s: %d new pairs (%d held out), fine-tuning %s",
        run.id,
        len(pairs),
        len(heldout),
        parent.name,
    )
    return PreparedRun(run, parent, previous, pairs, train, heldout)


def complete_retrain(
    settings: Settings,
    db: Database,
    prepared: PreparedRun,
    *,
    cancel: threading.Event | None = None,
) -> RetrainOutcome:
    """Train, evaluate, gate, promote or reject; a failure is recorded and returned, not raised
    (except KeyboardInterrupt / SystemExit, after recording)."""
    run, parent, r = prepared.run, prepared.parent, settings.retrain
    work = recovery.work_dir(settings, run.id)
    metrics = RunMetrics(
        trigger=run.trigger, parent_version=parent.name, pairs=PairCounts.of(prepared.pairs)
    )
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        with runs.Heartbeat(db, run.id, r.heartbeat_seconds) as heartbeat:
            result = run_worker(
                _worker_job(settings, prepared, work),
                grace_minutes=r.grace_minutes,
                cancel=cancel,
                lost=heartbeat.lost,
                on_start=lambda pid: runs.record_worker_pid(db, run.id, pid),
            )
        decision = gate.decide(result.parent, result.candidate, r.ppl_tolerance)
        metrics = metrics.with_worker(result).with_decision(decision)
        metrics = metrics.model_copy(update={"seconds": prepared.seconds()})
        # Pairs one epoch trains on: the new ones (repeated) and the base sample.
        total = result.pairs.train * r.new_pair_repeats + result.pairs.base_sample
        if decision.promote:
            version = versions.promote(
                db,
                result.candidate_dir,
                versions.new_version_dir(settings, run.id),
                parent=parent.name,
                run_id=run.id,
                scores=decision.candidate,
                run_metrics=metrics,
                new_pairs=len(prepared.pairs),
                total_pairs=total,
                last_message_id=prepared.pairs.last_message_id,
                last_taught_pair_id=prepared.pairs.last_taught_pair_id,
            )
            log.info("training run %s: promoted %s", run.id, version.name)
            return _outcome(db, prepared, "promoted", version.name, metrics, None)
        runs.finish_rejected(
            db,
            run.id,
            previous=prepared.previous,
            new_pairs=len(prepared.pairs),
            total_pairs=total,
            metrics=metrics,
        )
        log.info("training run %s: candidate rejected (%s)", run.id, "; ".join(decision.reasons))
        return _outcome(db, prepared, "rejected", None, metrics, None)
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        error = _error_text(exc)
        metrics = metrics.model_copy(update={"seconds": prepared.seconds()})
        runs.fail(db, run.id, error, metrics)
        log.error("training run %s failed: %s", run.id, error)
        if not isinstance(exc, Exception):
            raise
        return _outcome(db, prepared, "failed", None, metrics, error)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the job's pairs, the unpromoted checkpoints


def run_retrain(
    settings: Settings,
    db: Database,
    *,
    trigger: str,
    force: bool = False,
    cancel: threading.Event | None = None,
) -> RetrainOutcome:
    """`start_retrain` then `complete_retrain`."""
    prepared = start_retrain(settings, db, trigger=trigger, force=force)
    return complete_retrain(settings, db, prepared, cancel=cancel)


def _worker_job(settings: Settings, prepared: PreparedRun, work: Path) -> WorkerJob:
    r = settings.retrain
    return WorkerJob(
        parent_dir=Path(prepared.parent.checkpoint_path).resolve(),
        work_dir=work.resolve(),
        new_train=[_turns_pair(p) for p in prepared.train],
        new_heldout=[_turns_pair(p) for p in prepared.heldout],
        base_sources=[_absolute(source) for source in r.base_sources],
        base_sample_pairs=r.base_sample_pairs,
        new_pair_repeats=r.new_pair_repeats,
        new_word_min_count=r.new_word_min_count,
        max_new_words=r.max_new_words,
        allowed_new_words=allowed_new_words(prepared.pairs, r.vocab_min_users),
        training=r.training,
        cpu_threads=r.cpu_threads,
        distributed=Distributed.of(r) if r.nproc * r.nnodes > 1 else None,
        info={
            "parent_version": prepared.parent.name,
            "retrain_run": prepared.run.id,
            "fine_tuned_on": "chat logs",
        },
    )


def _absolute(source: str) -> str:
    """The worker runs in another directory: a file source goes to it as an absolute path."""
    return source if source in BUILTIN_SOURCES else str(Path(source).resolve())


def _turns_pair(pair: LogPair) -> TokenizedTurnsPair:
    return TokenizedTurnsPair(context=[list(turn) for turn in pair.context], reply=list(pair.reply))


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = " ".join(str(exc).split())
    return text if isinstance(exc, WorkerFailed) else f"{type(exc).__name__}: {text}"


def _outcome(
    db: Database,
    prepared: PreparedRun,
    status: Status,
    candidate: str | None,
    metrics: RunMetrics,
    error: str | None,
) -> RetrainOutcome:
    return RetrainOutcome(
        run_id=prepared.run.id,
        status=status,
        parent_version=prepared.parent.name,
        active_version=runs.active_version_name(db),
        candidate_version=candidate,
        metrics=metrics,
        error=error,
        seconds=time.monotonic() - prepared.started_at,
    )
