"""Data-parallel training of a tiny model, for tests: `python -m tests.support.data_parallel
launch OUT NPROC BATCH STEPS` starts NPROC ranks through `nlp.distributed.launch`; each trains
with the real `Trainer` on its share of every global batch and writes its final weights to
OUT/rank<R>.safetensors (the main rank also writes its checkpoint to OUT/checkpoint-rank0).
`train_single` trains the same model on the same pairs in one process, for comparison."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from config import ModelSettings, TextSettings, TrainingSettings
from nlp.datasets import EncodedPair
from nlp.distributed import DataParallel, Rendezvous, launch
from nlp.recipe import DataRecipe
from nlp.seq2seq import Seq2Seq
from nlp.training import Trainer
from nlp.vocabulary import Vocabulary
from tests.support.tiny_model import TINY_PAIRS

# 19 pairs: with a global batch of 6 the last batch of an epoch has one row, so one rank of two
# gets no rows at that step and must still take part.
PAIRS = TINY_PAIRS[:19]
MODEL = ModelSettings(embedding_dim=32, hidden_size=64, num_layers=1, dropout=0.0)


def tiny_data() -> tuple[Vocabulary, list[EncodedPair]]:
    sentences = [side.split() for pair in PAIRS for side in pair]
    vocab = Vocabulary.build(sentences)
    return vocab, [EncodedPair(vocab.encode(c.split()), vocab.encode(r.split())) for c, r in PAIRS]


def tiny_trainer(out_dir: Path, batch_size: int, steps: int, dp: DataParallel | None) -> Trainer:
    vocab, _ = tiny_data()
    torch.manual_seed(0)  # the same initial weights in every process
    training = TrainingSettings(
        batch_size=batch_size,
        learning_rate=0.01,
        max_steps=steps,
        max_epochs=100,
        lr_schedule="constant",
        early_stopping_patience=1000,
        sample_replies=0,
        bf16=False,  # exact float32 arithmetic on every CPU
        device="cpu",
        seed=11,
    )
    return Trainer(
        Seq2Seq(MODEL, len(vocab)),
        vocab,
        training,
        MODEL,
        TextSettings(),
        DataRecipe(),
        out_dir,
        torch.device("cpu"),
        show_progress=False,
        data_parallel=dp,
    )


def train_single(out_dir: Path, batch_size: int, steps: int) -> dict[str, torch.Tensor]:
    """One process: the final weights."""
    _, pairs = tiny_data()
    trainer = tiny_trainer(out_dir, batch_size, steps, None)
    trainer.train(pairs, pairs[:5])
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _rank(out: Path, batch_size: int, steps: int) -> None:
    torch.set_num_threads(1)
    dp = DataParallel.start("cpu")
    try:
        _, pairs = tiny_data()
        trainer = tiny_trainer(out / f"checkpoint-rank{dp.rank}", batch_size, steps, dp)
        trainer.train(pairs, pairs[:5])
        # Copies: tied weights share one tensor, which safetensors will not save twice.
        weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        save_file(weights, str(out / f"rank{dp.rank}.safetensors"))
    finally:
        dp.close()


def main(argv: list[str]) -> None:
    command, out, *numbers = argv
    if command == "rank":
        batch_size, steps = (int(n) for n in numbers)
        _rank(Path(out), batch_size, steps)
        return
    nproc, batch_size, steps = (int(n) for n in numbers)
    module = [sys.executable, "-m", "tests.support.data_parallel", "rank", out]
    launch([*module, str(batch_size), str(steps)], nproc_per_node=nproc, rendezvous=Rendezvous())


if __name__ == "__main__":
    main(sys.argv[1:])
