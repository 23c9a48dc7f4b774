"""Fine-tuning a trained checkpoint on new pairs, and the perplexity numbers a promotion gate needs.

The recipe: start from the parent checkpoint; append the new pairs' frequent unseen words to its
vocabulary (`Vocabulary.extend` only appends, `extend_vocabulary` adds embedding and output rows
and keeps every old weight); train with the ordinary `Trainer` on the new pairs mixed with a sample
of the base corpus's training split, so the model keeps its everyday replies; keep the best
checkpoint by validation loss. Pairs arrive already tokenised (the caller masks and filters them),
because placeholders such as `<email>` do not survive being tokenised a second time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from config import TrainingSettings
from nlp.checkpoint import Checkpoint
from nlp.datasets import TokenizedPair, encode_pairs, tokenized_splits
from nlp.errors import DataError
from nlp.recipe import DataRecipe
from nlp.seq2seq import extend_vocabulary
from nlp.text import TextProcessor
from nlp.training import Trainer, TrainResult, mean_loss, set_seed

if TYPE_CHECKING:
    from nlp.distributed import DataParallel


def tokenized_pair(
    recipe: DataRecipe, context_turns: Sequence[Sequence[str]], reply: Sequence[str]
) -> TokenizedPair | None:
    """A pair built with the recipe's context rule, as `tokenize_pairs` builds pairs from text;
    None when either side is empty or the reply is longer than the recipe allows."""
    context = recipe.model_input(context_turns)
    if not context or not reply or len(reply) > recipe.max_length:
        return None
    return TokenizedPair(context, list(reply))


@dataclass(frozen=True)
class BasePairs:
    """The base corpus as the parent was trained on it: a sample of its training split (mixed
    into fine-tuning) and its validation split (held out for the gate)."""

    train_sample: list[TokenizedPair]
    valid: list[TokenizedPair]


def base_pairs(
    sources: Sequence[str],
    processor: TextProcessor,
    recipe: DataRecipe,
    sample_size: int,
    seed: int,
) -> BasePairs:
    """Split the base sources with the parent's own recipe, so the validation pairs were never
    trained on. A corpus too small to have a validation split validates on its first training
    pairs instead (`tokenized_splits`)."""
    if not sources:
        raise DataError("no base corpus given: retraining needs base_sources")
    splits = tokenized_splits(recipe.for_sources(sources), processor)
    train, valid = splits["train"], splits["valid"]
    sample = random.Random(seed).sample(train, min(sample_size, len(train)))
    return BasePairs(sample, valid)


def grow_vocabulary(
    checkpoint: Checkpoint,
    pairs: Sequence[TokenizedPair],
    min_count: int,
    max_new: int,
    seed: int = 0,
    allowed: Collection[str] | None = None,
) -> list[str]:
    """Append the frequent unseen words of `pairs` to the checkpoint's vocabulary and give the
    model a row for each (old rows untouched, new rows drawn from `seed`); returns the words
    added, in id order. `allowed`: only these words may be added (None: any); the caller decides
    which (retraining: words enough different people wrote)."""
    added = checkpoint.vocab.extend(
        (s for p in pairs for s in (p.context, p.reply)), min_count, max_new, allowed=allowed
    )
    if added:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            checkpoint.model = extend_vocabulary(checkpoint.model, len(checkpoint.vocab))
    return added


def fine_tune(
    checkpoint: Checkpoint,
    train: Sequence[TokenizedPair],
    valid: Sequence[TokenizedPair],
    training: TrainingSettings,
    out_dir: Path,
    device: torch.device,
    *,
    info: dict[str, Any] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    data_parallel: DataParallel | None = None,
) -> TrainResult:
    """Train `checkpoint`'s model (vocabulary already grown) on `train`; the best epoch by
    validation loss is saved to `out_dir` with the parent's sizes and text settings. With
    `data_parallel`, one rank of several (`nlp.distributed`): every rank passes the same pairs;
    the main rank saves."""
    set_seed(training.seed)
    if data_parallel is not None:  # each rank its own dropout masks; batches stay the same
        torch.manual_seed(training.seed + data_parallel.rank)
    trainer = Trainer(
        checkpoint.model,
        checkpoint.vocab,
        training,
        checkpoint.model_settings,
        checkpoint.text_settings,
        checkpoint.recipe,
        Path(out_dir),
        device,
        info={**checkpoint.info, **(info or {})},
        show_progress=False,
        on_epoch_end=on_epoch_end,
        data_parallel=data_parallel,
    )
    return trainer.train(
        encode_pairs(train, checkpoint.vocab), encode_pairs(valid, checkpoint.vocab)
    )


def perplexity(
    checkpoint: Checkpoint, pairs: Sequence[TokenizedPair], device: torch.device | str = "cpu"
) -> float:
    """Token-level perplexity of `pairs`, encoded with the checkpoint's own vocabulary (words it
    does not know count as `<unk>`, which it then has to predict)."""
    if not pairs:
        raise DataError("perplexity of an empty set of pairs")
    device = torch.device(device)
    checkpoint.model.to(device)
    loss = mean_loss(checkpoint.model, encode_pairs(pairs, checkpoint.vocab), device)
    return math.exp(min(loss, 50.0))
