"""The new pairs a run trains on: from the logs, as the model being fine-tuned reads them.

`collect` tokenises and masks the logs' pairs with that model's text settings and keeps the
replies its data recipe allows (longer ones are counted as `too_long`, so the held-out split
holds only usable pairs); `split_heldout` sets aside the pairs the gate scores both models on;
`allowed_new_words` says which words the fine-tuned model's vocabulary may gain.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from bot.retraining.blocklist import Blocklist
from bot.retraining.errors import NotEnoughPairsError
from bot.retraining.pairs import LogPair, LogPairs, training_pairs_from_logs
from config import Settings, TextSettings
from nlp.checkpoint import read_config
from nlp.datasets import split_of
from nlp.recipe import DataRecipe
from nlp.text import TextProcessor
from storage.database import Database
from storage.training_runs import RunInfo


def pair_processor(checkpoint_dir: Path) -> tuple[TextProcessor, DataRecipe]:
    """The text processing of the model being fine-tuned (masking always on) and its data
    recipe: new pairs must be tokenised and cut the way that model reads."""
    config = read_config(checkpoint_dir)
    text = TextSettings.model_validate(config.get("text", {})).model_copy(
        update={"mask_emails": True, "mask_urls": True, "mask_numbers": True}
    )
    return TextProcessor(text), DataRecipe.from_config(config)


def collect(
    settings: Settings, db: Database, since: RunInfo | None, checkpoint_dir: Path
) -> LogPairs:
    """The training pairs since `since` for the checkpoint in `checkpoint_dir`."""
    processor, recipe = pair_processor(checkpoint_dir)
    blocklist = Blocklist.load(settings.retrain.blocklist_path, processor)
    pairs = db.read(
        training_pairs_from_logs,
        since,
        processor,
        blocklist,
        context_turns=recipe.context_turns,
        settle=timedelta(seconds=settings.retrain.settle_seconds),
    )
    usable = [p for p in pairs.pairs if len(p.reply) <= recipe.max_length]
    if len(usable) == len(pairs.pairs):
        return pairs
    return LogPairs(
        usable,
        pairs.exported,
        {**pairs.dropped, "too_long": len(pairs.pairs) - len(usable)},
        pairs.last_message_id,
        pairs.last_taught_pair_id,
        dict(Counter(p.kind for p in usable)),
        pairs.word_users,
    )


def allowed_new_words(pairs: LogPairs, min_users: int) -> list[str]:
    """The words of `pairs` that at least `min_users` different people wrote: the only ones a
    retraining may add to the vocabulary (`retrain.vocab_min_users`), so that no one person's
    own words (a name, a secret, an address) get a row in a model anyone can talk to. Sorted,
    so a job is the same for the same pairs."""
    return sorted(word for word, people in pairs.word_users.items() if people >= min_users)


def check_enough(pairs: LogPairs, settings: Settings, force: bool) -> None:
    """`NotEnoughPairsError` below `min_new_pairs` (forced: below 2, one to train, one to hold
    out)."""
    needed = 2 if force else max(2, settings.retrain.min_new_pairs)
    if len(pairs) < needed:
        raise NotEnoughPairsError(len(pairs), needed)


def split_heldout(pairs: list[LogPair], fraction: float) -> tuple[list[LogPair], list[LogPair]]:
    """A stable held-out slice (by a hash of each pair's key); both sides non-empty for 2+ pairs."""
    train = [p for p in pairs if split_of(p.key, fraction, 0.0) != "valid"]
    heldout = [p for p in pairs if split_of(p.key, fraction, 0.0) == "valid"]
    if not heldout and len(train) > 1:
        heldout = [train.pop()]
    if not train and len(heldout) > 1:
        train = [heldout.pop(0)]
    return train, heldout
