"""The training process: `python -m bot.retraining.worker WORK_DIR/job.json`, or one rank of a
data-parallel run: `python -m bot.retraining.worker --rank --device DEVICE [WORK_DIR/job.json]`
(started by `bot.retraining.launch`).

It reads its `WorkerJob` (and deletes the file at once: it holds people's pairs), fine-tunes the
parent checkpoint on the job's pairs and writes into WORK_DIR only: `train/` (the trainer's best
checkpoint), `candidate/` (the checkpoint to serve, written atomically, without optimizer state),
`status.json` (a heartbeat: phase and epoch), `result.json` (a `WorkerResult`: both models'
perplexities on the held-out sets; written last, atomically) and `worker.log`. It never touches
the database or any other directory, so killing it at any moment (`kill -9`, the parent's time
limit) can only leave an unfinished WORK_DIR behind, which the parent removes (or, if the parent
died too, `recovery` at the next start). If the parent process dies, the worker notices within a
second, removes WORK_DIR (the pairs are in its log and checkpoints learned from them, and nobody
else would remove it before the next run starts) and exits.

Data parallel: the main rank (the first rank that was given the job file, so on the node that
started the run) reads the job and prepares everything as a single worker would, then sends the
other ranks what they train on (the parent with its grown vocabulary, the pairs, the settings)
over the process group: they need neither the job nor the files it names, so nodes without the
run's data can train. All ranks train (`nlp.distributed`); the main rank then saves, evaluates
and writes the result, alone.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.observability import log_setup
from bot.retraining.contract import (
    CANDIDATE_DIR,
    TRAIN_DIR,
    PairSizes,
    TokenizedTurnsPair,
    TrainingSummary,
    WorkerJob,
    WorkerResult,
    WorkerStatus,
)
from bot.retraining.gate import Scores
from config import TrainingSettings

if TYPE_CHECKING:  # torch and the model load in the worker's process only, when it runs
    import torch

    from nlp.checkpoint import Checkpoint
    from nlp.datasets import TokenizedPair
    from nlp.distributed import DataParallel
    from nlp.finetune import BasePairs
    from nlp.training import TrainResult

EXIT_PARENT_GONE = 70

log = logging.getLogger("bot.retraining.worker")


@dataclass
class _Prepared:
    """What fine-tuning starts from: the parent (its vocabulary grown) and the pairs."""

    parent: Checkpoint
    parent_fp16: bool
    base: BasePairs
    new_train: list[TokenizedPair]
    heldout: list[TokenizedPair]
    added: list[str]
    train: list[TokenizedPair]
    info: dict[str, Any]


def run(job: WorkerJob) -> WorkerResult:
    """Fine-tune, save the candidate, score both models; returns (and writes) the result."""
    import torch

    from nlp.device import resolve_device
    from nlp.finetune import fine_tune

    if job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    work, training = job.work_dir, job.training
    WorkerStatus(phase="loading").save(work)
    device = resolve_device(training.device)
    prepared = _prepare(job)
    WorkerStatus(phase="training", epoch=0, epochs=training.max_epochs).save(work)
    trained = fine_tune(
        prepared.parent,
        prepared.train,
        prepared.base.valid + prepared.heldout,
        training,
        work / TRAIN_DIR,
        device,
        info=prepared.info,
        on_epoch_end=_epoch_reporter(work, training),
    )
    return _finish(job, prepared, trained, device)


@dataclass
class Scratch:
    """The run's work directory, once this process knows it (from its job)."""

    path: Path | None = None


def run_rank(
    job_file: Path | None, device_name: str, scratch: Scratch | None = None
) -> WorkerResult | None:
    """One rank of a data-parallel run (see the module docstring); the result on the main
    rank, None on the others. The main rank records the work directory in `scratch`."""
    import torch

    from nlp.distributed import DataParallel
    from nlp.finetune import fine_tune

    dp = DataParallel.start(device_name)
    try:
        dp = dp.with_main(dp.gather_flags(job_file is not None))
        pids = dp.gather_ints(os.getpid())
        job: WorkerJob | None = None
        prepared: _Prepared | None = None
        if dp.is_main:
            assert job_file is not None
            job = WorkerJob.load(job_file)
            job_file.unlink()  # people's pairs: on disk no longer than it takes to read them
            if scratch is not None:
                scratch.path = job.work_dir
            WorkerStatus(phase="loading", rank_pids=pids).save(job.work_dir)
            prepared = _prepare(job)
        shared = _share(dp, job, prepared)
        parent = dp.broadcast_checkpoint(prepared.parent if prepared else None)
        torch.set_num_threads(shared.cpu_threads or _cpu_share(dp))
        if job is not None:
            WorkerStatus(
                phase="training", epoch=0, epochs=shared.training.max_epochs, rank_pids=pids
            ).save(job.work_dir)
        trained = fine_tune(
            parent,
            shared.train,
            shared.valid,
            shared.training,
            shared.out_dir,
            dp.device,
            info=shared.info,
            on_epoch_end=_epoch_reporter(job.work_dir, shared.training, pids) if job else None,
            data_parallel=dp,
        )
    finally:
        dp.close()
    if job is None or prepared is None:
        return None
    return _finish(job, prepared, trained, dp.device, processes=dp.world_size)


@dataclass(frozen=True)
class _Shared:
    """What the main rank sends every rank besides the parent model."""

    train: list[TokenizedPair]
    valid: list[TokenizedPair]
    training: TrainingSettings
    info: dict[str, Any]
    out_dir: Path  # written by the main rank only
    cpu_threads: int


def _share(dp: DataParallel, job: WorkerJob | None, prepared: _Prepared | None) -> _Shared:
    from nlp.datasets import TokenizedPair

    sent = None
    if job is not None and prepared is not None:
        sent = {
            "train": [[p.context, p.reply] for p in prepared.train],
            "valid": [[p.context, p.reply] for p in prepared.base.valid + prepared.heldout],
            "training": job.training.model_dump(mode="json"),
            "info": prepared.info,
            "out_dir": str(job.work_dir / TRAIN_DIR),
            "cpu_threads": job.cpu_threads,
        }
    got = dp.broadcast_json(sent)
    return _Shared(
        train=[TokenizedPair(context, reply) for context, reply in got["train"]],
        valid=[TokenizedPair(context, reply) for context, reply in got["valid"]],
        training=TrainingSettings.model_validate(got["training"]),
        info=got["info"],
        out_dir=Path(got["out_dir"]),
        cpu_threads=int(got["cpu_threads"]),
    )


def _cpu_share(dp: DataParallel) -> int:
    """Threads per rank when the job does not say: the node's cores shared among its ranks."""
    return max(1, (os.cpu_count() or 1) // dp.local_world_size)


def _epoch_reporter(work: Path, training: TrainingSettings, pids: list[int] | None = None) -> Any:
    def report(record: dict[str, Any]) -> None:
        WorkerStatus(
            phase="training", epoch=record["epoch"], epochs=training.max_epochs, rank_pids=pids
        ).save(work)

    return report


def _prepare(job: WorkerJob) -> _Prepared:
    from nlp.checkpoint import load_checkpoint, read_config
    from nlp.finetune import base_pairs, grow_vocabulary, tokenized_pair
    from nlp.text import TextProcessor

    training = job.training
    parent = load_checkpoint(job.parent_dir)
    parent_fp16 = read_config(job.parent_dir).get("weights_dtype") == "float16"
    processor = TextProcessor(parent.text_settings)
    base = base_pairs(
        job.base_sources, processor, parent.recipe, job.base_sample_pairs, training.seed
    )

    def tokenized(pairs: list[TokenizedTurnsPair]) -> list[TokenizedPair]:
        made = (tokenized_pair(parent.recipe, p.context, p.reply) for p in pairs)
        return [p for p in made if p is not None]

    new_train, heldout = tokenized(job.new_train), tokenized(job.new_heldout)
    if not new_train or not heldout:
        raise ValueError("the job needs training and held-out pairs within the length limit")
    added = grow_vocabulary(
        parent,
        new_train,
        job.new_word_min_count,
        job.max_new_words,
        seed=training.seed,
        allowed=frozenset(job.allowed_new_words),
    )
    train = new_train * job.new_pair_repeats + base.train_sample
    info = {
        **job.info,
        "new_pairs": len(new_train),
        "heldout_pairs": len(heldout),
        "base_pairs": len(base.train_sample),
        "words_added": len(added),
    }
    return _Prepared(parent, parent_fp16, base, new_train, heldout, added, train, info)


def _finish(
    job: WorkerJob,
    prepared: _Prepared,
    trained: TrainResult,
    device: torch.device,
    processes: int = 1,
) -> WorkerResult:
    """Save the best checkpoint as the candidate, score it and the parent, write the result."""
    import torch

    from nlp.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from nlp.finetune import perplexity

    work, base, heldout = job.work_dir, prepared.base, prepared.heldout
    WorkerStatus(phase="saving").save(work)
    best = load_checkpoint(work / TRAIN_DIR)
    candidate_dir = save_checkpoint(
        work / CANDIDATE_DIR,
        Checkpoint(
            best.model,
            best.vocab,
            best.model_settings,
            best.text_settings,
            best.recipe,
            best.metrics,
            best.info,
        ),
        fp16=prepared.parent_fp16,
    )

    WorkerStatus(phase="evaluating").save(work)
    scores: list[Scores] = []
    for directory in (job.parent_dir, candidate_dir):
        checkpoint = load_checkpoint(directory, device)
        scores.append(
            Scores(
                base_ppl=perplexity(checkpoint, base.valid, device),
                new_ppl=perplexity(checkpoint, heldout, device),
            )
        )
        del checkpoint
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = WorkerResult(
        candidate_dir=candidate_dir,
        words_added=len(prepared.added),
        pairs=PairSizes(
            train=len(prepared.new_train),
            heldout=len(heldout),
            base_sample=len(base.train_sample),
            base_valid=len(base.valid),
        ),
        training=TrainingSummary(
            epochs=trained.epochs,
            steps=trained.steps,
            seconds=round(trained.seconds, 2),
            stopped_because=trained.stopped_because,
            best_valid_loss=(
                trained.best_valid_loss if math.isfinite(trained.best_valid_loss) else None
            ),
            device=str(device),
            processes=processes,
        ),
        parent=scores[0],
        candidate=scores[1],
    )
    result.save(work)
    WorkerStatus(phase="done").save(work)
    return result


def exit_when_orphaned(parent_pid: int, scratch: Callable[[], Path | None] = lambda: None) -> None:
    """The parent (bot, CLI, scheduler; for a rank, its launcher) owns the run: without it
    nobody would promote or record the result, so training on would only burn CPU. The work
    directory `scratch()` names (if any yet) goes first: it holds what people wrote (the log's
    sample replies, checkpoints trained on their pairs), and its owner is gone."""
    while True:
        if os.getppid() != parent_pid:
            _remove(scratch())
            os._exit(EXIT_PARENT_GONE)
        time.sleep(1.0)


def _remove(work: Path | None) -> None:
    for _ in range(3):  # again if the training thread wrote a file into it meanwhile
        if work is None or not work.exists():
            return
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.retraining.worker")
    parser.add_argument("--rank", action="store_true", help="one rank of a data-parallel run")
    parser.add_argument("--device", default="auto", help="a rank's device (auto, cpu, cuda)")
    parser.add_argument("job", nargs="?", type=Path, help="WORK_DIR/job.json")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.job is None and not args.rank:
        parser.error("the job file is missing")
    log_setup.configure(logging.INFO)
    scratch = Scratch()
    threading.Thread(
        target=exit_when_orphaned,
        args=(os.getppid(), lambda: scratch.path),
        daemon=True,
        name="orphan-watch",
    ).start()
    if args.rank:
        from torch.distributed.elastic.multiprocessing.errors import record

        # `record` writes an exception to the launcher's error file: the run's error says it.
        record(run_rank)(args.job, args.device, scratch)
        return 0
    job_file = Path(args.job)
    job = WorkerJob.load(job_file)
    job_file.unlink()  # people's pairs: on disk no longer than it takes to read them
    scratch.path = job.work_dir
    run(job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
