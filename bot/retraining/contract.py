"""What crosses the process boundary between a retraining run and its worker.

The run writes a `WorkerJob` into the run's work directory; the worker (`bot.retraining.worker`)
deletes that file as soon as it has read it (it holds people's pairs), writes `WorkerStatus`
heartbeats while it works and a `WorkerResult` when it is done, each file atomically. Both sides
read typed models, so neither reads the other's output by guessed string keys.

A job with `distributed` runs as several processes (`bot.retraining.launch`, then one worker per
rank); when one of them fails, the launcher writes a `LaunchFailure` saying which and why.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.retraining.gate import Scores
from config import RetrainSettings, TrainingSettings

JOB, STATUS, RESULT, LOG = "job.json", "status.json", "result.json", "worker.log"
FAILURE = "failure.json"
TRAIN_DIR, CANDIDATE_DIR = "train", "candidate"


class TokenizedTurnsPair(BaseModel):
    """A pair from the logs, masked and tokenised: context turns (oldest first) and the reply.
    The worker builds the model input from the turns with the parent's data recipe."""

    model_config = ConfigDict(frozen=True)

    context: list[list[str]]
    reply: list[str]


class Distributed(BaseModel):
    """Data-parallel training: processes on this node, and on how many nodes meeting where."""

    nproc_per_node: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    rdzv_endpoint: str | None = None  # host:port, needed with several nodes
    rdzv_id: str = "chatbot-retrain"

    @classmethod
    def of(cls, retrain: RetrainSettings) -> Distributed:
        """As the retraining settings say (`--nproc`, `--nnodes`, the rendezvous)."""
        return cls(
            nproc_per_node=retrain.nproc,
            nnodes=retrain.nnodes,
            rdzv_endpoint=retrain.rdzv_endpoint,
            rdzv_id=retrain.rdzv_id,
        )

    def launcher_arguments(self) -> list[str]:
        """Its options on the command line of `bot.retraining.launch`."""
        endpoint = ["--rdzv-endpoint", self.rdzv_endpoint] if self.rdzv_endpoint else []
        return [
            "--nproc-per-node",
            str(self.nproc_per_node),
            "--nnodes",
            str(self.nnodes),
            *endpoint,
            "--rdzv-id",
            self.rdzv_id,
        ]


class WorkerJob(BaseModel):
    """Everything the worker needs: the parent checkpoint, the new pairs and how to train."""

    parent_dir: Path
    work_dir: Path
    new_train: list[TokenizedTurnsPair]
    new_heldout: list[TokenizedTurnsPair]  # for the gate only, never trained on
    base_sources: list[str]
    base_sample_pairs: int
    new_pair_repeats: int
    new_word_min_count: int
    max_new_words: int
    # The only words the vocabulary may gain: those enough different people wrote
    # (`collect.allowed_new_words`); a word of the pairs not listed stays `<unk>`.
    allowed_new_words: list[str]
    training: TrainingSettings
    cpu_threads: int = 0  # 0: torch's default (data parallel on the CPU: the cores shared out)
    info: dict[str, str | int] = Field(default_factory=dict)  # recorded in the candidate
    distributed: Distributed | None = None  # None: one process

    def save(self) -> Path:
        path = self.work_dir / JOB
        write_atomically(path, self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> WorkerJob:
        return cls.model_validate_json(path.read_bytes())


class WorkerStatus(BaseModel):
    """The worker's heartbeat: what it is doing, and its pid (tests kill it by that)."""

    phase: Literal["loading", "training", "saving", "evaluating", "done"]
    pid: int = Field(default_factory=os.getpid)
    at: float = Field(default_factory=time.time)
    epoch: int | None = None
    epochs: int | None = None
    rank_pids: list[int] | None = None  # data parallel: every rank's pid, in rank order

    def save(self, work_dir: Path) -> None:
        write_atomically(work_dir / STATUS, self.model_dump_json())


class PairSizes(BaseModel):
    """How many pairs the worker trained and evaluated on (after the length limit)."""

    train: int  # new pairs trained on (each repeated `new_pair_repeats` times)
    heldout: int  # new pairs held out for the gate
    base_sample: int  # base-corpus training pairs mixed in
    base_valid: int  # base-corpus validation pairs, for the gate


class TrainingSummary(BaseModel):
    epochs: int
    steps: int
    seconds: float
    stopped_because: str
    best_valid_loss: float | None  # None: not finite
    device: str
    processes: int = 1  # data-parallel ranks that trained


class WorkerResult(BaseModel):
    """Written last: the candidate checkpoint and both models' scores on the same held-out
    pairs. Perplexities may be NaN or infinite (a diverged model): written as such."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    candidate_dir: Path
    words_added: int
    pairs: PairSizes
    training: TrainingSummary
    parent: Scores
    candidate: Scores

    def save(self, work_dir: Path) -> None:
        write_atomically(work_dir / RESULT, self.model_dump_json(indent=2))

    @classmethod
    def load(cls, work_dir: Path) -> WorkerResult | None:
        """The result, or None when the worker wrote none (or not a valid one)."""
        try:
            return cls.model_validate_json((work_dir / RESULT).read_bytes())
        except (FileNotFoundError, ValidationError):
            return None


class LaunchFailure(BaseModel):
    """Why a data-parallel launch failed: the rank that failed first, and how."""

    message: str

    def save(self, work_dir: Path) -> None:
        write_atomically(work_dir / FAILURE, self.model_dump_json())

    @classmethod
    def load(cls, work_dir: Path) -> LaunchFailure | None:
        try:
            return cls.model_validate_json((work_dir / FAILURE).read_bytes())
        except (FileNotFoundError, ValidationError):
            return None


def read_status(work_dir: Path) -> WorkerStatus | None:
    """The latest heartbeat; None before the first one."""
    try:
        return WorkerStatus.model_validate_json((work_dir / STATUS).read_bytes())
    except FileNotFoundError:
        return None


def write_atomically(path: Path, text: str) -> None:
    """Readers in the other process see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)
