"""The training loop: Adam, clipping, a learning-rate schedule over the run's budget, validation
(with sample replies in the log) every epoch or every N steps, early stopping, the best checkpoint
kept, optional averaging of the last validations' weights.

Teacher forcing is a single forward pass per batch (see `Seq2Seq.forward`); only positions holding a
real target token are projected onto the vocabulary and scored.

With `data_parallel` (`nlp.distributed`) the same loop runs in every process of a process group:
each step trains on this rank's share of a global batch of `batch_size x world_size` pairs and
sums the gradients across ranks, the time-budget stop is agreed by all ranks each step, and only
the main rank validates (the others receive its loss) and writes checkpoints.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from config import ModelSettings, TextSettings, TrainingSettings
from nlp.checkpoint import Checkpoint, load_checkpoint, load_training_state, save_checkpoint
from nlp.datasets import Batch, EncodedPair, bucketed_batches, pad, prepare_corpus
from nlp.device import bf16_pays, resolve_device
from nlp.errors import CheckpointError
from nlp.recipe import DataRecipe
from nlp.schedule import LearningRateSchedule
from nlp.seq2seq import Seq2Seq
from nlp.text import TextProcessor
from nlp.vocabulary import PAD_ID, Vocabulary

if TYPE_CHECKING:
    from nlp.distributed import DataParallel

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_loss(
    model: Seq2Seq,
    batch: Batch,
    label_smoothing: float = 0.0,
    bf16: bool = False,
    *,
    reduction: Literal["mean", "sum"] = "mean",
) -> tuple[Tensor, int]:
    """Mean (or summed) token cross-entropy of one teacher-forced batch, and its number of target
    tokens."""
    keep = batch.trg_out.ne(PAD_ID)
    device_type = batch.src.device.type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(batch.src, batch.src_lengths, batch.trg_in, keep)
    loss = F.cross_entropy(
        logits.float(), batch.trg_out[keep], label_smoothing=label_smoothing, reduction=reduction
    )
    return loss, int(keep.sum())


def clip_gradients(model: Seq2Seq, max_norm: float) -> None:
    """`clip_grad_norm_` without its multiply by 1.0 when the norm is already under `max_norm`:
    the same gradients, and half the time (8 -> 4 ms at hidden 500 on this project's CPU) on
    most steps (34 of the first 40 steps of the bench's model were under 5)."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
    if not float(norm) + 1e-6 <= max_norm:  # clip_grad_norm_'s own test; NaN clips as there
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)


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
    data_parallel: DataParallel | None = None  # one rank of several (see the module docstring)

    def __post_init__(self) -> None:
        self.model.to(self.device)
        self.main = self.data_parallel is None or self.data_parallel.is_main
        self._agreed_seconds = 0.0  # data parallel: this call's elapsed time, agreed by all ranks
        self.bf16 = (
            bf16_pays(self.device) if self.settings.bf16 is None else bool(self.settings.bf16)
        )
        # Fused Adam (one kernel over all parameters, where torch has one): the same update as the
        # per-parameter loop, 4x faster on this project's CPU (one thread, hidden 500: 175 -> 42
        # ms a step). With `clip_gradients`, training steps measured 1.14x faster (bench).
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=self.settings.learning_rate, fused=_fused_adam(self.device)
        )
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer,
            factor=self.settings.lr_decay_factor,
            patience=self.settings.lr_decay_patience,
        )
        self.schedule = LearningRateSchedule(self.settings.lr_schedule)  # sized in train()
        self.step = 0
        self.epoch = 0
        self.epoch_step = 0  # batches of the current epoch already trained on
        self.elapsed = 0.0  # seconds of this run before the current call of train()
        self.best_valid = math.inf
        self.bad_validations = 0
        self.history: list[dict[str, Any]] = []
        self._recent_weights: deque[dict[str, Tensor]] = deque(
            maxlen=max(self.settings.average_last, 1)
        )

    # ---- resume --------------------------------------------------------------------------------

    def resume_from(self, directory: Path) -> None:
        """Continue a run where its checkpoint was saved: optimizer moments, LR schedule position
        (step and elapsed time), counters and history from `directory`."""
        tensors, state = load_training_state(directory)
        if state is None:
            return
        if tensors is not None:
            self.optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
            for group in self.optimizer.param_groups:  # this device's kernel, not the saver's
                group["fused"] = _fused_adam(self.device)
        self.plateau.load_state_dict(state["scheduler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.epoch_step = state.get("epoch_step", 0)
        self.elapsed = state.get("elapsed_seconds", 0.0)
        self.best_valid = state["best_valid"]
        self.bad_validations = state.get("bad_validations", state.get("bad_epochs", 0))
        self.history = state["history"]

    # ---- the loop ------------------------------------------------------------------------------

    def train(self, train: Sequence[EncodedPair], valid: Sequence[EncodedPair]) -> TrainResult:
        if not train or not valid:
            raise ValueError("training needs at least one training and one validation pair")
        s = self.settings
        start = time.monotonic()
        # Data parallel: each step takes a global batch; every rank trains on its share of it.
        global_batch = s.batch_size * (self.data_parallel.world_size if self.data_parallel else 1)
        self._agreed_seconds = 0.0
        steps_per_epoch = math.ceil(len(train) / global_batch)
        total_steps = s.max_epochs * steps_per_epoch
        if s.max_steps is not None:
            total_steps = min(total_steps, s.max_steps)
        budget = s.time_budget_minutes * 60 if s.time_budget_minutes else None
        self.schedule = LearningRateSchedule(s.lr_schedule, s.warmup_steps, total_steps, budget)
        deadline = start + budget - self.elapsed if budget else math.inf
        stopped = "max_epochs"
        last_log = start
        self.model.train()
        while self.epoch < s.max_epochs:
            running = _Running()
            batches = bucketed_batches(train, global_batch, shuffle=True, seed=s.seed + self.epoch)
            for _ in range(self.epoch_step):  # a resumed run skips what it already trained on
                next(batches, None)
            bar = tqdm(
                batches,
                total=steps_per_epoch - self.epoch_step,
                desc=f"epoch {self.epoch + 1}",
                leave=False,
                disable=not self.show_progress,
                mininterval=1.0,
                dynamic_ncols=True,
            )
            out_of_budget, improved = False, True
            for batch in bar:
                self.set_learning_rate(self._seconds_so_far(start))
                loss, n = self._step(batch)
                self.epoch_step += 1
                running.add(loss, n)
                if self.step % 20 == 0:
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{running.rate():,.0f}")
                    if self.main and not self.show_progress and time.monotonic() - last_log > 60:
                        # A log file gets a line a minute where a terminal gets the bar.
                        log.info(
                            "step %d: loss %.3f, lr %.2e, %.0f tok/s",
                            self.step,
                            loss,
                            self.optimizer.param_groups[0]["lr"],
                            running.rate(),
                        )
                        last_log = time.monotonic()
                if s.max_steps is not None and self.step >= s.max_steps:
                    stopped, out_of_budget = "max_steps", True
                elif self._out_of_time(deadline, start):
                    stopped, out_of_budget = "time_budget", True
                if out_of_budget:
                    break
                if s.validate_every_steps and self.step % s.validate_every_steps == 0:
                    improved = self._validate(running, valid, start)
                    running = _Running()
                    if self._should_stop_early(improved):
                        break
            bar.close()
            if out_of_budget or not self._should_stop_early(improved):
                self.epoch, self.epoch_step = self.epoch + 1, 0  # a cut-off epoch counts too
            if running.tokens or not s.validate_every_steps:
                improved = self._validate(running, valid, start)
            if out_of_budget:
                break
            if self._should_stop_early(improved):
                stopped = "early_stopping"
                break
        self._average_recent_weights(valid, start)
        self._plot_history()
        self.elapsed += time.monotonic() - start
        return TrainResult(
            self.best_valid, self.step, self.epoch, self.elapsed, stopped, self.history
        )

    def _should_stop_early(self, improved: bool) -> bool:
        return not improved and self.bad_validations > self.settings.early_stopping_patience

    def set_learning_rate(self, elapsed: float) -> None:
        """The schedule's rate for the next step (`self.step`), `elapsed` seconds into the run."""
        if self.settings.lr_schedule == "plateau" and self.step >= self.settings.warmup_steps:
            return  # the plateau rule owns the rate once warmup is over
        factor = self.schedule.factor(self.step, elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = self.settings.learning_rate * factor

    def _seconds_so_far(self, start: float) -> float:
        """The run's elapsed time for the learning-rate schedule; data parallel: as agreed by
        the ranks at the last step, so that every rank sets the same rate."""
        if self.data_parallel is None:
            return self.elapsed + time.monotonic() - start
        return self.elapsed + self._agreed_seconds

    def _out_of_time(self, deadline: float, start: float) -> bool:
        """Past the time budget; data parallel: all ranks stop when any of them is past it."""
        if self.data_parallel is None:
            return time.monotonic() > deadline
        stop, self._agreed_seconds = self.data_parallel.agree(
            time.monotonic() > deadline, time.monotonic() - start
        )
        return stop

    def _step(self, batch: Batch) -> tuple[float, int]:
        if self.data_parallel is None:
            return self.train_step(batch.to(self.device))
        return self.data_parallel_step(batch, self.data_parallel)

    def data_parallel_step(self, batch: Batch, dp: DataParallel) -> tuple[float, int]:
        """One optimiser step on this rank's share of the global `batch` (the same on every
        rank): (the global batch's mean loss, its target tokens), as `train_step` on the whole
        batch would return. The loss is summed and divided by the global token count, the
        gradients summed across ranks: their sum is the gradient of the global mean loss."""
        tokens = batch.num_target_tokens
        shard = dp.shard(batch)
        self.optimizer.zero_grad(set_to_none=True)
        share = 0.0
        if shard is not None:
            loss_sum, _ = batch_loss(
                self.model,
                shard.to(self.device),
                self.settings.label_smoothing,
                self.bf16,
                reduction="sum",
            )
            loss = loss_sum / tokens
            loss.backward()  # type: ignore[no-untyped-call]
            share = float(loss.detach())
        mean = dp.all_reduce_gradients(self.model, share)
        clip_gradients(self.model, self.settings.clip_grad_norm)
        self.optimizer.step()
        self.step += 1
        return mean, tokens

    def train_step(self, batch: Batch) -> tuple[float, int]:
        """One optimiser step on one batch: (loss, target tokens). The bench times this."""
        loss, n = batch_loss(self.model, batch, self.settings.label_smoothing, self.bf16)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        clip_gradients(self.model, self.settings.clip_grad_norm)
        self.optimizer.step()
        self.step += 1
        return float(loss.detach()), n

    def _validate(self, running: _Running, valid: Sequence[EncodedPair], start: float) -> bool:
        """Validation loss, a few sample replies in the log, the best checkpoint kept."""
        valid_loss = self._validation_loss(valid)
        improved = valid_loss < self.best_valid
        if self.settings.lr_schedule == "plateau":
            self.plateau.step(valid_loss)
        if improved:
            self.best_valid, self.bad_validations = valid_loss, 0
        else:
            self.bad_validations += 1
        record = {
            "epoch": self.epoch,
            "step": self.step,
            "train_loss": running.mean(),
            "valid_loss": valid_loss,
            "valid_ppl": math.exp(min(valid_loss, 50.0)),
            "lr": self.optimizer.param_groups[0]["lr"],
            "tokens_per_s": running.rate(),
            "seconds": round(self.elapsed + time.monotonic() - start, 1),
        }
        self.history.append(record)
        if not self.main:
            return improved  # the main rank logs, keeps weights and writes the checkpoints
        log.info(
            "step %d (epoch %d): train loss %.3f, valid ppl %.2f, lr %.2e, %.0f tok/s%s",
            self.step,
            self.epoch,
            record["train_loss"],
            record["valid_ppl"],
            record["lr"],
            record["tokens_per_s"],
            " (best)" if improved else "",
        )
        for line in sample_replies(self.model, self.vocab, valid, self.settings.sample_replies):
            log.info("  %s", line)
        if self.settings.average_last > 1:
            self._recent_weights.append(
                {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            )
        if improved:
            self._save(self.elapsed + time.monotonic() - start)
        self._write_history()
        if self.on_epoch_end:
            self.on_epoch_end(record)
        return improved

    def _validation_loss(self, valid: Sequence[EncodedPair]) -> float:
        """Data parallel: the main rank's, sent to the others (their weights are the same), so
        that early stopping and the plateau rule decide alike everywhere."""
        dp = self.data_parallel
        if dp is None:
            return mean_loss(self.model, valid, self.device, bf16=self.bf16)
        loss = mean_loss(self.model, valid, self.device, bf16=self.bf16) if dp.is_main else 0.0
        return dp.broadcast_float(loss)

    def _average_recent_weights(self, valid: Sequence[EncodedPair], start: float) -> None:
        """Average the weights of the last `average_last` validations (a cheap ensemble, as in
        JoeyNMT/fairseq); kept only if the average validates better than the best so far."""
        if len(self._recent_weights) < 2:
            return
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        averaged = {
            name: torch.stack([w[name].float() for w in self._recent_weights])
            .mean(0)
            .to(trained[name].dtype)
            for name in trained
        }
        self.model.load_state_dict(averaged)
        loss = mean_loss(self.model, valid, self.device, bf16=self.bf16)
        log.info(
            "average of the last %d validations: valid ppl %.2f (best single %.2f)",
            len(self._recent_weights),
            math.exp(min(loss, 50.0)),
            math.exp(min(self.best_valid, 50.0)),
        )
        if loss < self.best_valid:
            self.best_valid = loss
            self.info = {**self.info, "averaged_validations": len(self._recent_weights)}
            self._save(self.elapsed + time.monotonic() - start)
        else:
            self.model.load_state_dict(trained)

    def _save(self, elapsed: float) -> None:
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
                "epoch_step": self.epoch_step,
                "elapsed_seconds": elapsed,
                "best_valid": self.best_valid,
                "bad_validations": self.bad_validations,
                "history": self.history,
                "scheduler": self.plateau.state_dict(),
                "optimizer": optimizer_meta,
            },
        )

    def _write_history(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "history.json").write_text(json.dumps(self.history, indent=2) + "\n")

    def _plot_history(self) -> None:
        from nlp.plots import plot_losses  # matplotlib only when a run ends

        if self.main and self.history and self.out_dir.is_dir():
            plot_losses(self.history, self.out_dir / "loss.png")


class _Running:
    """Training loss and speed since the last validation."""

    def __init__(self) -> None:
        self.loss, self.tokens, self.start = 0.0, 0, time.monotonic()

    def add(self, loss: float, tokens: int) -> None:
        self.loss += loss * tokens
        self.tokens += tokens

    def mean(self) -> float:
        return self.loss / max(self.tokens, 1)

    def rate(self) -> float:
        return self.tokens / max(time.monotonic() - self.start, 1e-9)


def sample_replies(
    model: Seq2Seq, vocab: Vocabulary, pairs: Sequence[EncodedPair], count: int
) -> list[str]:
    """`context => greedy reply (reference)` for the first `count` pairs: what a reader of a
    training log needs to see besides the loss."""
    if count <= 0 or not pairs:
        return []
    from nlp.search.greedy import greedy_search  # search imports the model, not the trainer
    from nlp.search.step import StepConstraints

    chosen = list(pairs[:count])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        src = pad([p.src for p in chosen]).to(device)
        lengths = torch.tensor([len(p.src) for p in chosen])
        hyps = greedy_search(model, src, lengths, 30, StepConstraints())
    model.train(was_training)
    return [
        f"{' '.join(vocab.decode(p.src))} => {' '.join(vocab.decode(h.tokens))}"
        f"  (ref: {' '.join(vocab.decode(p.trg))})"
        for p, h in zip(chosen, hyps, strict=True)
    ]


def _fused_adam(device: torch.device) -> bool:
    return device.type in ("cpu", "cuda")


def _flatten_optimizer(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Adam's state as flat tensors for safetensors, plus the JSON-able rest."""
    state = optimizer.state_dict()
    tensors = {
        f"{index}.{key}": value.detach().cpu().contiguous()
        for index, slots in state["state"].items()
        for key, value in slots.items()
        if isinstance(value, Tensor)
    }
    return tensors, {"param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
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
    init_from: Path | None = None,
    reverse: bool = False,
    fp16_weights: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """The whole recipe behind `chatbot train`: data -> vocabulary -> model -> best checkpoint.

    `init_from`: a second stage. The run starts from that checkpoint's weights, vocabulary, sizes
    and context rule, with a fresh optimizer and schedule (so a longer budget anneals again), on
    `sources` split by the same rule: its test pairs stay the parent's test pairs."""
    if resume and init_from is not None:
        raise ValueError("resume continues the run in the output directory; init_from starts one")
    set_seed(training.seed)
    device = resolve_device(training.device)
    start_dir = out_dir if resume else init_from
    start = load_checkpoint(start_dir) if start_dir is not None else None
    if start is not None:  # a resumed or second-stage run keeps the sizes it was started with
        model_settings, text_settings = start.model_settings, start.text_settings
    if (
        init_from is not None
        and start is not None
        and (start.recipe.direction == "reverse") != reverse
    ):
        fix = (
            "a forward model: drop --reverse" if reverse else "a reverse (MMI) model: add --reverse"
        )
        raise CheckpointError(f"{init_from} is {fix}")
    recipe = (
        start.recipe.for_sources(sources if init_from is not None else None)
        if start
        else DataRecipe.from_training(sources, training, reverse=reverse)
    )
    corpus = prepare_corpus(
        recipe, TextProcessor(text_settings), vocab=start.vocab if start else None
    )
    model = start.model if start else Seq2Seq(model_settings, len(corpus.vocab))
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
        info=_lineage(init_from, start),
        fp16_weights=fp16_weights,
        show_progress=show_progress,
    )
    if resume:
        trainer.resume_from(out_dir)
    return trainer.train(corpus.encoded["train"], corpus.encoded["valid"])


def _lineage(init_from: Path | None, start: Checkpoint | None) -> dict[str, Any]:
    """What a second-stage checkpoint records of the one it started from (a resumed run keeps
    its record)."""
    if start is None:
        return {}
    if init_from is None:
        return {"init_from": start.info["init_from"]} if "init_from" in start.info else {}
    return {
        "init_from": {
            "path": str(init_from),
            "steps": start.info.get("steps"),
            "seed": start.info.get("seed"),
            "init_from": start.info.get("init_from"),
        }
    }
