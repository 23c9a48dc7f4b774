"""The training process: `python -m bot.retraining.worker WORK_DIR/job.json`.

It reads its `WorkerJob` (and deletes the file at once: it holds people's pairs), fine-tunes the
parent checkpoint on the job's pairs and writes into WORK_DIR only: `train/` (the trainer's best
checkpoint), `candidate/` (the checkpoint to serve, written atomically, without optimizer state),
`status.json` (a heartbeat: phase and epoch), `result.json` (a `WorkerResult`: both models'
perplexities on the held-out sets; written last, atomically) and `worker.log`. It never touches
the database or any other directory, so killing it at any moment (`kill -9`, the parent's time
limit) can only leave an unfinished WORK_DIR behind, which the parent removes (or, if the parent
died too, `recovery` at the next start). If the parent process dies, the worker notices within a
second and exits.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from pathlib import Path

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

EXIT_PARENT_GONE = 70

log = logging.getLogger("bot.retraining.worker")


def run(job: WorkerJob) -> WorkerResult:
    """Fine-tune, save the candidate, score both models; returns (and writes) the result."""
    import torch

    from nlp.checkpoint import Checkpoint, load_checkpoint, read_config, save_checkpoint
    from nlp.datasets import TokenizedPair
    from nlp.device import resolve_device
    from nlp.finetune import base_pairs, fine_tune, grow_vocabulary, perplexity, tokenized_pair
    from nlp.text import TextProcessor

    if job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    work, training = job.work_dir, job.training
    WorkerStatus(phase="loading").save(work)
    device = resolve_device(training.device)
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
        parent, new_train, job.new_word_min_count, job.max_new_words, seed=training.seed
    )
    train = new_train * job.new_pair_repeats + base.train_sample
    info = {
        **job.info,
        "new_pairs": len(new_train),
        "heldout_pairs": len(heldout),
        "base_pairs": len(base.train_sample),
        "words_added": len(added),
    }
    WorkerStatus(phase="training", epoch=0, epochs=training.max_epochs).save(work)
    trained = fine_tune(
        parent,
        train,
        base.valid + heldout,
        training,
        work / TRAIN_DIR,
        device,
        info=info,
        on_epoch_end=lambda record: WorkerStatus(
            phase="training", epoch=record["epoch"], epochs=training.max_epochs
        ).save(work),
    )

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
        fp16=parent_fp16,
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
        words_added=len(added),
        pairs=PairSizes(
            train=len(new_train),
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
        ),
        parent=scores[0],
        candidate=scores[1],
    )
    result.save(work)
    WorkerStatus(phase="done").save(work)
    return result


def _exit_when_orphaned(parent_pid: int) -> None:
    """The parent (bot, CLI, scheduler) owns the run: without it nobody would promote or record
    the result, so training on would only burn CPU."""
    while True:
        if os.getppid() != parent_pid:
            os._exit(EXIT_PARENT_GONE)
        time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bot.retraining.worker WORK_DIR/job.json", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    threading.Thread(
        target=_exit_when_orphaned, args=(os.getppid(),), daemon=True, name="orphan-watch"
    ).start()
    job_file = Path(args[0])
    job = WorkerJob.load(job_file)
    job_file.unlink()  # people's pairs: on disk no longer than it takes to read them
    run(job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
