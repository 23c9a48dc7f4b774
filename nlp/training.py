"""The training loop: Adam, clipping, LR decay on plateau, early stopping, best-checkpoint keeping.

Teacher forcing is a single forward pass per batch (see `Seq2Seq.forward`); only positions holding a
real target token are projected onto the vocabulary and scored.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from config import ModelSettings, TextSettings, TrainingSettings
from nlp.checkpoint import Checkpoint, load_checkpoint, load_training_state, save_checkpoint
from nlp.datasets import Batch, EncodedPair, bucketed_batches, prepare_corpus
from nlp.device import resolve_device
from nlp.recipe import DataRecipe
from nlp.seq2seq import Seq2Seq
from nlp.text import TextProcessor
from nlp.vocabulary import PAD_ID, Vocabulary

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_loss(
    model: Seq2Seq, batch: Batch, label_smoothing: float = 0.0, bf16: bool = False
) -> tuple[Tensor, int]:
    """Mean token cross-entropy of one teacher-forced batch, and its number of target tokens."""
    keep = batch.trg_out.ne(PAD_ID)
    device_type = batch.src.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(batch.src, batch.src_lengths, batch.trg_in, keep)
    loss = F.cross_entropy(logits.float(), batch.trg_out[keep], label_smoothing=label_smoothing)
    return loss, int(keep.sum())


@torch.no_grad()
def mean_loss(
    model: Seq2Seq,
    pairs: Sequence[EncodedPair],
    device: torch.device,
    batch_size: int = 128,
    bf16: bool = False,
) -> float:
    """Token-level cross-entropy over `pairs` (no label smoothing): exp() of it is perplexity."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for batch in bucketed_batches(pairs, batch_size, shuffle=False):
        loss, n = batch_loss(model, batch.to(device), bf16=bf16)
        total += float(loss) * n
        tokens += n
    model.train(was_training)
    return total / max(tokens, 1)


@dataclass
class TrainResult:
    best_valid_loss: float
    steps: int
    epochs: int
    seconds: float
    stopped_because: str
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Trainer:
    """Trains `model` and keeps the best checkpoint (by validation loss) in `out_dir`."""

    model: Seq2Seq
    vocab: Vocabulary
    settings: TrainingSettings
    model_settings: ModelSettings
    text_settings: TextSettings
    recipe: DataRecipe
    out_dir: Path
    device: torch.device
    info: dict[str, Any] = field(default_factory=dict)  # recorded as is: parent, new pairs, ...
    fp16_weights: bool = False
    show_progress: bool = True
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.settings.learning_rate)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            factor=self.settings.lr_decay_factor,
            patience=self.settings.lr_decay_patience,
        )
        self.step = 0
        self.epoch = 0
        self.best_valid = math.inf
        self.bad_epochs = 0
        self.history: list[dict[str, Any]] = []

    # ---- resume --------------------------------------------------------------------------------

    def resume_from(self, directory: Path) -> None:
        """Continue a run: optimizer moments, LR, counters and history from `directory`."""
        tensors, state = load_training_state(directory)
        if state is None:
            return
        if tensors is not None:
            self.optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
        self.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.best_valid, self.bad_epochs = state["best_valid"], state["bad_epochs"]
        self.history = state["history"]

    # ---- the loop ------------------------------------------------------------------------------

    def train(self, train: Sequence[EncodedPair], valid: Sequence[EncodedPair]) -> TrainResult:
        if not train or not valid:
            raise ValueError("training needs at least one training and one validation pair")
        s = self.settings
        start = time.monotonic()
        deadline = start + s.time_budget_minutes * 60 if s.time_budget_minutes else math.inf
        stopped = "max_epochs"
        last_log = start
        self.model.train()
        while self.epoch < s.max_epochs:
            epoch_loss, epoch_tokens, epoch_start = 0.0, 0, time.monotonic()
            batches = bucketed_batches(train, s.batch_size, shuffle=True, seed=s.seed + self.epoch)
            total = math.ceil(len(train) / s.batch_size)
            bar = tqdm(
                batches,
                total=total,
                desc=f"epoch {self.epoch + 1}",
                leave=False,
                disable=not self.show_progress,
                mininterval=1.0,
                dynamic_ncols=True,
            )
            out_of_time = False
            for batch in bar:
                loss, n = self.train_step(batch.to(self.device))
                epoch_loss += loss * n
                epoch_tokens += n
                if self.step % 20 == 0:
                    rate = epoch_tokens / max(time.monotonic() - epoch_start, 1e-9)
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{rate:,.0f}")
                    if not self.show_progress and time.monotonic() - last_log > 60:
                        # A log file gets a line a minute where a terminal gets the bar.
                        log.info("step %d: loss %.3f, %.0f tok/s", self.step, loss, rate)
                        last_log = time.monotonic()
                if s.max_steps is not None and self.step >= s.max_steps:
                    stopped, out_of_time = "max_steps", True
                    break
                if time.monotonic() > deadline:
                    stopped, out_of_time = "time_budget", True
                    break
            bar.close()
            self.epoch += 1
            improved = self._end_epoch(epoch_loss, epoch_tokens, epoch_start, valid)
            if out_of_time:
                break
            if not improved and self.bad_epochs > s.early_stopping_patience:
                stopped = "early_stopping"
                break
        self._plot_history()
        return TrainResult(
            self.best_valid, self.step, self.epoch, time.monotonic() - start, stopped, self.history
        )

    def train_step(self, batch: Batch) -> tuple[float, int]:
        """One optimiser step on one batch: (loss, target tokens). The bench times this."""
        loss, n = batch_loss(self.model, batch, self.settings.label_smoothing, self.settings.bf16)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip_grad_norm)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach()), n

    def _end_epoch(
        self, epoch_loss: float, epoch_tokens: int, epoch_start: float, valid: Sequence[EncodedPair]
    ) -> bool:
        seconds = time.monotonic() - epoch_start
        valid_loss = mean_loss(self.model, valid, self.device, bf16=self.settings.bf16)
        improved = valid_loss < self.best_valid
        self.scheduler.step(valid_loss)
        if improved:
            self.best_valid, self.bad_epochs = valid_loss, 0
        else:
            self.bad_epochs += 1
        record = {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": epoch_loss / max(epoch_tokens, 1),
            "valid_loss": valid_loss,
            "valid_ppl": math.exp(min(valid_loss, 50.0)),
            "lr": self.optimizer.param_groups[0]["lr"],
            "tokens_per_s": epoch_tokens / max(seconds, 1e-9),
            "seconds": seconds,
        }
        self.history.append(record)
        log.info(
            "epoch %d: train loss %.3f, valid ppl %.2f, %.0f tok/s%s",
            self.epoch,
            record["train_loss"],
            record["valid_ppl"],
            record["tokens_per_s"],
            " (best)" if improved else "",
        )
        if improved:
            self._save()
        self._write_history()
        if self.on_epoch_end:
            self.on_epoch_end(record)
        return improved

    def _save(self) -> None:
        metrics = {"valid_loss": self.best_valid, "valid_ppl": math.exp(min(self.best_valid, 50))}
        tensors, optimizer_meta = _flatten_optimizer(self.optimizer)
        save_checkpoint(
            self.out_dir,
            Checkpoint(
                self.model,
                self.vocab,
                self.model_settings,
                self.text_settings,
                self.recipe,
                metrics,
                {**self.info, "seed": self.settings.seed, "steps": self.step, "epochs": self.epoch},
            ),
            fp16=self.fp16_weights,
            optimizer_state=None if self.fp16_weights else tensors,
            trainer_state={
                "step": self.step,
                "epoch": self.epoch,
                "best_valid": self.best_valid,
                "bad_epochs": self.bad_epochs,
                "history": self.history,
                "scheduler": self.scheduler.state_dict(),
                "optimizer": optimizer_meta,
            },
        )

    def _write_history(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")

    def _plot_history(self) -> None:
        from nlp.plots import plot_losses  # matplotlib only when a run ends

        if self.history and self.out_dir.is_dir():
            plot_losses(self.history, self.out_dir / "loss.png")


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict]:
    """Adam's state as flat tensors for safetensors, plus the JSON-able rest."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": value.detach().cpu().contiguous()
        for index, slots in state["state"].items()
        for key, value in slots.items()
        if isinstance(value, Tensor)
    }
    return tensors, {"param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def train_from_sources(
    sources: Sequence[str],
    out_dir: Path,
    training: TrainingSettings,
    model_settings: ModelSettings,
    text_settings: TextSettings,
    *,
    resume: bool = False,
    reverse: bool = False,
    fp16_weights: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """The whole recipe behind `chatbot train`: data -> vocabulary -> model -> best checkpoint."""
    set_seed(training.seed)
    device = resolve_device(training.device)
    previous = load_checkpoint(out_dir) if resume else None
    if previous is not None:  # a resumed run keeps the sizes it was started with
        model_settings, text_settings = previous.model_settings, previous.text_settings
    recipe = (
        previous.recipe
        if previous
        else DataRecipe.from_training(sources, training, reverse=reverse)
    )
    corpus = prepare_corpus(
        recipe, TextProcessor(text_settings), vocab=previous.vocab if previous else None
    )
    model = previous.model if previous else Seq2Seq(model_settings, len(corpus.vocab))
    log.info(
        "data: %s pairs train / %s valid / %s test; vocabulary %d; model %.1fM parameters on %s",
        *(f"{len(corpus.encoded[s]):,}" for s in ("train", "valid", "test")),
        len(corpus.vocab),
        model.num_parameters() / 1e6,
        device,
    )
    trainer = Trainer(
        model,
        corpus.vocab,
        training,
        model_settings,
        text_settings,
        recipe,
        Path(out_dir),
        device,
        fp16_weights=fp16_weights,
        show_progress=show_progress,
    )
    if previous is not None:
        trainer.resume_from(out_dir)
    return trainer.train(corpus.encoded["train"], corpus.encoded["valid"])
