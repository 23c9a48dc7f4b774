"""One retraining run, from the lock to the promotion decision.

`start_retrain` (quick; raises what a user should hear at once):
  recover runs whose process died -> refuse if a run is running -> collect the new pairs since the
  last successful run and refuse if there are fewer than `min_new_pairs` (nothing is recorded) ->
  take the lock (`start_run`, a unique index: one running run) -> make sure a version is active
  (version zero) -> collect again, now authoritatively -> split off the held-out new pairs.
`complete_retrain` (minutes; never raises for a failed run, it records it):
  write the job into a fresh work directory -> run `bot.retraining.worker` in a separate process
  with a hard time limit (killed beyond it, or when cancelled) -> read both models' perplexities
  -> the gate -> promote (move the checkpoint into its own version directory, then register +
  activate + finish the run in one transaction) or reject (finish the run, keep the active model)
  -> remove the work directory.
Nothing but `versions.promote` writes outside the work directory, and the active model's
directory is only ever read, so a crash or `kill -9` at any point leaves the active model and
every earlier version as they were; the run is marked failed, by this process if it survives or by
`recovery.recover` on the next start if it does not.

A rejected run does not move the export watermarks: its pairs are offered again, with the ones
that arrive later, to the next run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from bot.retraining import gate, recovery, versions
from bot.retraining.blocklist import Blocklist
from bot.retraining.errors import NotEnoughPairsError
from bot.retraining.pairs import LogPair, LogPairs, training_pairs_from_logs
from bot.retraining.worker import LOG, RESULT, WorkerJob, read_json
from config import Settings, TextSettings
from nlp.checkpoint import read_config
from nlp.datasets import split_of
from nlp.recipe import DataRecipe
from nlp.text import TextProcessor
from storage import model_versions, training_runs
from storage.database import Database
from storage.errors import NotFoundError, TrainingRunInProgressError
from storage.model_versions import VersionInfo
from storage.training_runs import RunInfo

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
Status = Literal["promoted", "rejected", "failed"]


class WorkerFailed(Exception):
    """The training process did not produce a result (crashed, killed, too slow, cancelled)."""


@dataclass(frozen=True)
class PreparedRun:
    """A run that holds the lock, with the pairs it will train on."""

    run: RunInfo
    parent: VersionInfo
    previous: RunInfo | None  # the last successful run: where the export started
    pairs: LogPairs
    train: list[LogPair]
    heldout: list[LogPair]
    max_length: int
    started_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class RetrainOutcome:
    run_id: int
    status: Status
    parent_version: str
    active_version: str | None  # after the run
    candidate_version: str | None  # the new version's name when promoted
    metrics: dict[str, Any]
    error: str | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "status": self.status,
            "parent_version": self.parent_version,
            "active_version": self.active_version,
            "candidate_version": self.candidate_version,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "metrics": self.metrics,
        }


# ---- pairs -----------------------------------------------------------------------------------


def pair_processor(checkpoint_dir: Path) -> tuple[TextProcessor, DataRecipe]:
    """The text processing of the model being fine-tuned (masking always on) and its data
    recipe: new pairs must be tokenised and cut the way that model reads."""
    config = read_config(checkpoint_dir)
    text = TextSettings(**config.get("text", {})).model_copy(
        update={"mask_emails": True, "mask_urls": True, "mask_numbers": True}
    )
    return TextProcessor(text), DataRecipe.from_config(config)


def collect(
    settings: Settings, db: Database, since: RunInfo | None, checkpoint_dir: Path
) -> tuple[LogPairs, int]:
    """The training pairs since `since`, and the model's maximum length (longer replies are
    dropped here, counted as `too_long`, so the held-out split only holds usable pairs)."""
    processor, recipe = pair_processor(checkpoint_dir)
    max_length = recipe.max_length
    blocklist = Blocklist.load(settings.retrain.blocklist_path, processor)
    pairs = db.read(
        training_pairs_from_logs,
        since,
        processor,
        blocklist,
        context_turns=recipe.context_turns,
        settle=timedelta(seconds=settings.retrain.settle_seconds),
    )
    usable = [p for p in pairs.pairs if len(p.reply) <= max_length]
    if len(usable) < len(pairs.pairs):
        pairs = LogPairs(
            usable,
            pairs.exported,
            {**pairs.dropped, "too_long": len(pairs.pairs) - len(usable)},
            pairs.last_message_id,
            pairs.last_taught_pair_id,
            dict(Counter(p.kind for p in usable)),
        )
    return pairs, max_length


def split_heldout(pairs: list[LogPair], fraction: float) -> tuple[list[LogPair], list[LogPair]]:
    """A stable held-out slice (by a hash of each pair's key); both sides non-empty for 2+ pairs."""
    train = [p for p in pairs if split_of(p.key, fraction, 0.0) != "valid"]
    heldout = [p for p in pairs if split_of(p.key, fraction, 0.0) == "valid"]
    if not heldout and len(train) > 1:
        heldout = [train.pop()]
    if not train and len(heldout) > 1:
        train = [heldout.pop(0)]
    return train, heldout


def _check_enough(pairs: LogPairs, settings: Settings, force: bool) -> None:
    needed = 2 if force else max(2, settings.retrain.min_new_pairs)
    if len(pairs) < needed:
        raise NotEnoughPairsError(len(pairs), needed)


# ---- the run -----------------------------------------------------------------------------------


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
    pairs, _ = collect(settings, db, previous, versions.active_checkpoint_dir(settings, db))
    _check_enough(pairs, settings, force)

    with db.begin() as session:
        run = training_runs.start_run(session, trigger=trigger)
        training_runs.set_running_metrics(
            session, run.id, {"owner": recovery.owner_stamp(), "trigger": trigger}
        )
    try:
        parent = versions.ensure_active_version(settings, db)
        previous = db.read(training_runs.last_successful_run)
        pairs, max_length = collect(settings, db, previous, Path(parent.checkpoint_path))
        _check_enough(pairs, settings, force)
        train, heldout = split_heldout(pairs.pairs, settings.retrain.heldout_fraction)
    except BaseException as exc:
        _fail(db, run.id, _error_text(exc), {"trigger": trigger})
        raise
    log.info(
        "training run %s: %d new pairs (%d held out), fine-tuning %s",
        run.id,
        len(pairs),
        len(heldout),
        parent.name,
    )
    return PreparedRun(run, parent, previous, pairs, train, heldout, max_length)


def complete_retrain(
    settings: Settings,
    db: Database,
    prepared: PreparedRun,
    *,
    cancel: threading.Event | None = None,
) -> RetrainOutcome:
    """Train, evaluate, gate, promote or reject; a failure is recorded and returned, not raised
    (except KeyboardInterrupt / SystemExit, after recording)."""
    run, parent = prepared.run, prepared.parent
    work = recovery.work_dir(settings, run.id)
    metrics: dict[str, Any] = {
        "trigger": run.trigger,
        "parent_version": parent.name,
        "pairs": _pair_counts(prepared),
    }
    try:
        result = _train_in_worker(settings, db, prepared, work, cancel)
        metrics["pairs"].update(result["pairs"])
        metrics["words_added"] = result["words_added"]
        metrics["training"] = result["training"]
        decision = gate.decide(
            gate.Scores(**result["active"]),
            gate.Scores(**result["candidate"]),
            settings.retrain.ppl_tolerance,
        )
        metrics.update(decision.as_dict())
        metrics["seconds"] = round(time.monotonic() - prepared.started_at, 1)
        # Pairs one epoch trains on: the new ones (repeated) and the base sample.
        total = (
            result["pairs"]["train"] * settings.retrain.new_pair_repeats
            + result["pairs"]["base_sample"]
        )
        if decision.promote:
            target = versions.new_version_dir(settings, run.id)
            version = versions.promote(
                db,
                Path(result["candidate_dir"]),
                target,
                parent=parent.name,
                run_id=run.id,
                version_metrics={
                    **decision.candidate.as_dict(),
                    "parent": parent.name,
                    "run": run.id,
                },
                run_metrics=metrics,
                new_pairs=len(prepared.pairs),
                total_pairs=total,
                last_message_id=prepared.pairs.last_message_id,
                last_taught_pair_id=prepared.pairs.last_taught_pair_id,
            )
            log.info("training run %s: promoted %s", run.id, version.name)
            return _outcome(db, prepared, "promoted", version.name, metrics, None)
        with db.begin() as session:
            training_runs.finish_run(
                session,
                run.id,
                new_pairs=len(prepared.pairs),
                total_pairs=total,
                metrics=metrics,
                # Not advanced: the rejected pairs are offered again to the next run.
                last_message_id=prepared.previous.last_message_id if prepared.previous else None,
                last_taught_pair_id=(
                    prepared.previous.last_taught_pair_id if prepared.previous else None
                ),
            )
        log.info("training run %s: candidate rejected (%s)", run.id, "; ".join(decision.reasons))
        return _outcome(db, prepared, "rejected", None, metrics, None)
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        error = _error_text(exc)
        metrics["seconds"] = round(time.monotonic() - prepared.started_at, 1)
        _fail(db, run.id, error, metrics)
        log.error("training run %s failed: %s", run.id, error)
        if not isinstance(exc, Exception):
            raise
        return _outcome(db, prepared, "failed", None, metrics, error)
    finally:
        shutil.rmtree(work, ignore_errors=True)


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


# ---- the worker process ------------------------------------------------------------------------


def _worker_job(settings: Settings, prepared: PreparedRun, work: Path) -> WorkerJob:
    r = settings.retrain
    return WorkerJob(
        parent_dir=str(Path(prepared.parent.checkpoint_path).resolve()),
        work_dir=str(work),
        new_train=[_pair_json(p) for p in prepared.train],
        new_heldout=[_pair_json(p) for p in prepared.heldout],
        base_sources=list(r.base_sources),
        base_sample_pairs=r.base_sample_pairs,
        new_pair_repeats=r.new_pair_repeats,
        new_word_min_count=r.new_word_min_count,
        max_new_words=r.max_new_words,
        training={
            "batch_size": r.batch_size,
            "learning_rate": r.learning_rate,
            "max_epochs": r.epochs,
            "time_budget_minutes": r.time_budget_minutes,
            # A few epochs on purpose: no early stop; the best epoch is kept.
            "early_stopping_patience": r.epochs,
            "seed": r.seed,
            "device": r.device,
            "max_length": prepared.max_length,
            "min_count": 1,
        },
        cpu_threads=r.cpu_threads,
        info={
            "parent_version": prepared.parent.name,
            "retrain_run": prepared.run.id,
            "fine_tuned_on": "chat logs",
        },
    )


def _pair_json(pair: LogPair) -> dict[str, Any]:
    return {"context": [list(turn) for turn in pair.context], "reply": list(pair.reply)}


def _train_in_worker(
    settings: Settings,
    db: Database,
    prepared: PreparedRun,
    work: Path,
    cancel: threading.Event | None,
) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    job_file = _worker_job(settings, prepared, work).save()
    r = settings.retrain
    limit_s = (r.time_budget_minutes + r.grace_minutes) * 60.0
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(_python_path())}
    with (work / LOG).open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.retraining.worker", str(job_file)],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,  # the terminal's Ctrl-C goes to us; we stop the worker
        )
    try:
        _record_worker(db, prepared, process.pid)
        deadline = time.monotonic() + limit_s
        while True:
            try:
                code = process.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise WorkerFailed("cancelled: the service running it is stopping") from None
                if time.monotonic() > deadline:
                    raise WorkerFailed(
                        f"the training process ran past its time limit ({r.time_budget_minutes:g}"
                        f" min training + {r.grace_minutes:g} min grace) and was stopped"
                    ) from None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if code < 0:
        raise WorkerFailed(f"the training process was killed (signal {-code})")
    if code != 0:  # its traceback's last lines say why
        raise WorkerFailed(f"the training process failed (exit code {code}){_log_tail(work / LOG)}")
    result = read_json(work / RESULT)
    if result is None:
        raise WorkerFailed("the training process exited without a result")
    return result


def _python_path() -> list[str]:
    existing = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return [str(PROJECT_ROOT), *existing]


def _record_worker(db: Database, prepared: PreparedRun, pid: int) -> None:
    with db.begin() as session:
        current = training_runs.get_run(session, prepared.run.id)
        training_runs.set_running_metrics(
            session, prepared.run.id, {**(current.metrics or {}), "worker_pid": pid}
        )


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line.strip() for line in tail)) if tail else ""


# ---- bookkeeping -------------------------------------------------------------------------------


def _pair_counts(prepared: PreparedRun) -> dict[str, Any]:
    return {
        "exported": prepared.pairs.exported,
        "new": len(prepared.pairs),
        "kinds": prepared.pairs.kinds,
        "dropped": prepared.pairs.dropped,
    }


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = " ".join(str(exc).split())
    return text if isinstance(exc, WorkerFailed) else f"{type(exc).__name__}: {text}"


def _fail(db: Database, run_id: int, error: str, metrics: dict[str, Any]) -> None:
    try:
        with db.begin() as session:
            training_runs.fail_run(session, run_id, error, metrics=metrics)
    except NotFoundError:  # already marked failed (a recovery decided it had died)
        pass
    except Exception:
        log.exception("could not record training run %s as failed", run_id)


def _outcome(
    db: Database,
    prepared: PreparedRun,
    status: Status,
    candidate: str | None,
    metrics: dict[str, Any],
    error: str | None,
) -> RetrainOutcome:
    try:
        active = db.read(model_versions.get_active_version)
        active_name = active.name if active is not None else None
    except Exception:
        active_name = None
    return RetrainOutcome(
        run_id=prepared.run.id,
        status=status,
        parent_version=prepared.parent.name,
        active_version=active_name,
        candidate_version=candidate,
        metrics=metrics,
        error=error,
        seconds=time.monotonic() - prepared.started_at,
    )
