"""Fine-tuning a checkpoint on new pairs: vocabulary growth, training, perplexity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from config import TrainingSettings
from nlp.checkpoint import load_checkpoint
from nlp.datasets import TokenizedPair
from nlp.finetune import base_pairs, fine_tune, grow_vocabulary, perplexity, tokenized_pair
from nlp.recipe import DataRecipe
from nlp.text import TextProcessor
from nlp.vocabulary import SEP

NEW = [
    TokenizedPair(
        ["what", "is", "your", "favourite", "colour", "?"], ["blue", "like", "the", "sky"]
    ),
    TokenizedPair(["which", "colour", "do", "you", "like", "?"], ["blue", "like", "the", "sky"]),
]


def test_turns_are_joined_by_sep_and_cut_from_the_left() -> None:
    recipe = DataRecipe(context_turns=3, max_length=4)
    pair = tokenized_pair(recipe, [["a", "b"], [], ["c", "d", "e"]], ["ok"])
    assert pair == TokenizedPair(["b", SEP, "c", "d", "e"][-4:], ["ok"])
    assert tokenized_pair(recipe, [["a"]], ["x"] * 5) is None  # reply too long
    assert tokenized_pair(recipe, [[]], ["x"]) is None


def test_new_frequent_words_get_rows_and_every_old_weight_is_kept(tiny_model_dir: Path) -> None:
    checkpoint = load_checkpoint(tiny_model_dir)
    old_tokens = list(checkpoint.vocab.itos)
    old_state = {k: v.clone() for k, v in checkpoint.model.state_dict().items()}

    added = grow_vocabulary(checkpoint, NEW, min_count=2, max_new=100)

    # Seen twice and unknown; "favourite" is seen once, "the" and "like" are known already.
    assert added == ["blue", "colour", "sky"]
    assert checkpoint.vocab.itos[: len(old_tokens)] == old_tokens
    grown = checkpoint.model.state_dict()
    assert checkpoint.model.vocab_size == len(old_tokens) + 3
    for name, tensor in old_state.items():
        assert torch.equal(grown[name][: tensor.size(0)], tensor), name


@pytest.mark.slow  # a real fine-tune
def test_fine_tuning_learns_the_new_pairs_and_keeps_the_old_ones(
    tiny_model_dir: Path, tiny_pairs_file: Path, tmp_path: Path
) -> None:
    checkpoint = load_checkpoint(tiny_model_dir)
    base = base_pairs(
        [str(tiny_pairs_file)], TextProcessor(checkpoint.text_settings), checkpoint.recipe, 20, 1
    )
    before = perplexity(checkpoint, NEW)
    grow_vocabulary(checkpoint, NEW, min_count=1, max_new=100)
    training = TrainingSettings(
        batch_size=8,
        learning_rate=0.01,
        max_epochs=12,
        early_stopping_patience=12,
        device="cpu",
        seed=3,
        min_count=1,
    )
    result = fine_tune(
        checkpoint,
        NEW * 2 + base.train_sample,
        base.valid + NEW,
        training,
        tmp_path,
        torch.device("cpu"),
    )

    candidate = load_checkpoint(tmp_path)
    assert result.epochs == 12 and "favourite" in candidate.vocab
    assert perplexity(candidate, NEW) < before / 10
    assert perplexity(candidate, base.valid) < 1.5  # still knows its first words
    assert candidate.recipe == checkpoint.recipe
