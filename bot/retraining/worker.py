"""The training process: `python -m bot.retraining.worker WORK_DIR/job.json`.

It fine-tunes the parent checkpoint on the job's pairs and writes everything into WORK_DIR only:
`train/` (the trainer's best checkpoint), `candidate/` (the checkpoint to serve, written
atomically, without optimizer state), `status.json` (a heartbeat: phase and epoch), `result.json`
(both models' perplexities on the held-out sets; written last, atomically) and `worker.log`.
It never touches the database or any other directory, so killing it at any moment (`kill -9`, the
parent's time limit) can only leave an unfinished WORK_DIR behind, which the parent removes.
If the parent process dies, the worker notices within a second and exits.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

JOB, STATUS, RESULT, LOG = "job.json", "status.json", "result.json", "worker.log"
TRAIN_DIR, CANDIDATE_DIR = "train", "candidate"
EXIT_PARENT_GONE = 70

log = logging.getLogger("bot.retraining.worker")


@dataclass
class WorkerJob:
    """Everything the worker needs, as JSON: tokenised pairs and plain settings."""

    parent_dir: str
    work_dir: str
    new_train: list[dict[str, Any]]  # {"context": [[token, ...], ...], "reply": [token, ...]}
    new_heldout: list[dict[str, Any]]
    base_sources: list[str]
    base_sample_pairs: int
    new_pair_repeats: int
    new_word_min_count: int
    max_new_words: int
    training: dict[str, Any]  # TrainingSettings fields
    cpu_threads: int = 0  # 0: torch's default
    info: dict[str, Any] = field(default_factory=dict)  # recorded in the candidate's config

    def save(self) -> Path:
        path = Path(self.work_dir) / JOB
        write_json_atomically(path, asdict(self))
        return path

    @classmethod
    def load(cls, path: Path) -> WorkerJob:
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def write_json_atomically(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON file another process writes atomically; None while it does not exist."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def run(job: WorkerJob) -> dict[str, Any]:
    """Fine-tune, save the candidate, score both models; returns (and writes) the result."""
    import torch

    from config import TrainingSettings
    from nlp.checkpoint import Checkpoint, load_checkpoint, read_config, save_checkpoint
    from nlp.datasets import TokenizedPair
    from nlp.device import resolve_device
    from nlp.finetune import base_pairs, fine_tune, grow_vocabulary, perplexity, tokenized_pair
    from nlp.text import TextProcessor

    if job.cpu_threads:
        torch.set_num_threads(job.cpu_threads)
    work = Path(job.work_dir)
    status = _Status(work / STATUS)
    status.set("loading")
    training = TrainingSettings(**job.training)
    device = resolve_device(training.device)
    parent = load_checkpoint(Path(job.parent_dir))
    parent_fp16 = read_config(Path(job.parent_dir)).get("weights_dtype") == "float16"
    processor = TextProcessor(parent.text_settings)
    base = base_pairs(
        job.base_sources, processor, parent.recipe, job.base_sample_pairs, training.seed
    )

    def tokenized(pairs: list[dict[str, Any]]) -> list[TokenizedPair]:
        made = (tokenized_pair(parent.recipe, p["context"], p["reply"]) for p in pairs)
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
    status.set("training", epoch=0, epochs=training.max_epochs)
    result = fine_tune(
        parent,
        train,
        base.valid + heldout,
        training,
        work / TRAIN_DIR,
        device,
        info=info,
        on_epoch_end=lambda record: status.set(
            "training", epoch=record["epoch"], epochs=training.max_epochs
        ),
    )

    status.set("saving")
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

    status.set("evaluating")
    scores = {}
    for name, directory in (("active", Path(job.parent_dir)), ("candidate", candidate_dir)):
        checkpoint = load_checkpoint(directory, device)
        scores[name] = {
            "base_ppl": perplexity(checkpoint, base.valid, device),
            "new_ppl": perplexity(checkpoint, heldout, device),
        }
        del checkpoint
        if device.type == "cuda":
            torch.cuda.empty_cache()
    outcome = {
        "candidate_dir": str(candidate_dir),
        "words_added": len(added),
        "new_words": added[:50],
        "pairs": {
            "train": len(new_train),
            "heldout": len(heldout),
            "base_sample": len(base.train_sample),
            "base_valid": len(base.valid),
        },
        "training": {
            "epochs": result.epochs,
            "steps": result.steps,
            "seconds": round(result.seconds, 2),
            "stopped_because": result.stopped_because,
            "best_valid_loss": result.best_valid_loss,
            "device": str(device),
        },
        **scores,
    }
    write_json_atomically(work / RESULT, outcome)
    status.set("done")
    return outcome


class _Status:
    def __init__(self, path: Path) -> None:
        self.path = path

    def set(self, phase: str, **details: Any) -> None:
        write_json_atomically(
            self.path,
            {"phase": phase, "pid": os.getpid(), "at": time.time(), **details},
        )


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
    job = WorkerJob.load(Path(args[0]))
    run(job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
