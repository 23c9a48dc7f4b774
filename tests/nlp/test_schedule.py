"""The learning-rate schedule: warmup, decay to zero at the end of the budget, resumable."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from config import ModelSettings, TextSettings, TrainingSettings
from nlp.datasets import prepare_corpus
from nlp.recipe import DataRecipe
from nlp.schedule import LearningRateSchedule
from nlp.seq2seq import Seq2Seq
from nlp.text import TextProcessor
from nlp.training import Trainer, set_seed


def test_linear_schedule_warms_up_then_reaches_zero_at_the_step_budget() -> None:
    schedule = LearningRateSchedule("linear", warmup_steps=10, total_steps=100)
    assert schedule.factor(0, 0.0) == pytest.approx(0.1 * (1 - 0 / 100))
    assert schedule.factor(9, 0.0) == pytest.approx(1.0 * (1 - 9 / 100))
    assert schedule.factor(50, 0.0) == pytest.approx(0.5)
    assert schedule.factor(100, 0.0) == 0.0
    assert schedule.factor(150, 0.0) == 0.0  # never negative past the budget


def test_cosine_schedule_reaches_zero_at_the_time_budget() -> None:
    schedule = LearningRateSchedule("cosine", total_seconds=60.0)
    assert schedule.factor(0, 0.0) == pytest.approx(1.0)
    assert schedule.factor(10, 30.0) == pytest.approx(0.5)
    assert schedule.factor(20, 60.0) == pytest.approx(0.0, abs=1e-12)


def test_the_budget_that_ends_first_sets_the_progress() -> None:
    schedule = LearningRateSchedule("linear", total_steps=1000, total_seconds=100.0)
    assert schedule.progress(100, 50.0) == pytest.approx(0.5)  # time is further along
    assert schedule.progress(900, 50.0) == pytest.approx(0.9)  # steps are further along


def test_constant_and_plateau_only_warm_up() -> None:
    for kind in ("constant", "plateau"):
        schedule = LearningRateSchedule(kind, warmup_steps=4, total_steps=10)
        assert [schedule.factor(s, 0.0) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]


class StopAfter(Exception):
    pass


def _trainer(tiny_pairs_file: Path, out: Path, **overrides: object) -> tuple[Trainer, list]:
    set_seed(3)
    recipe = DataRecipe(
        sources=(str(tiny_pairs_file),), valid_fraction=0.0, test_fraction=0.0, min_count=1
    )
    corpus = prepare_corpus(recipe, TextProcessor())
    training = TrainingSettings(
        batch_size=4, learning_rate=0.01, max_steps=20, device="cpu", sample_replies=0, bf16=False
    ).model_copy(update=overrides)
    model_settings = ModelSettings(embedding_dim=16, hidden_size=16, num_layers=1, dropout=0.0)
    trainer = Trainer(
        Seq2Seq(model_settings, len(corpus.vocab)),
        corpus.vocab,
        training,
        model_settings,
        TextSettings(),
        recipe,
        out,
        torch.device("cpu"),
        show_progress=False,
    )
    return trainer, [corpus.encoded["train"], corpus.encoded["valid"]]


def _record_rates(trainer: Trainer) -> list[float]:
    rates: list[float] = []
    step = trainer.train_step

    def recording(batch):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        return step(batch)

    trainer.train_step = recording  # type: ignore[method-assign]
    return rates


def test_training_ends_annealed_at_its_step_budget(tiny_pairs_file: Path, tmp_path: Path) -> None:
    trainer, (train, valid) = _trainer(tiny_pairs_file, tmp_path / "run")
    rates = _record_rates(trainer)
    result = trainer.train(train, valid)
    assert result.steps == 20 and result.stopped_because == "max_steps"
    assert rates == pytest.approx([0.01 * (1 - s / 20) for s in range(20)])
    assert trainer.schedule.factor(result.steps, 0.0) == 0.0


@pytest.mark.slow  # trains its own tiny models
def test_resuming_mid_schedule_continues_it(tiny_pairs_file: Path, tmp_path: Path) -> None:
    whole, (train, valid) = _trainer(tiny_pairs_file, tmp_path / "whole", validate_every_steps=8)
    whole_rates = _record_rates(whole)
    whole.train(train, valid)

    def stop_at_eight(record: dict) -> None:
        if record["step"] == 8:
            raise StopAfter

    out = tmp_path / "interrupted"
    first, _ = _trainer(tiny_pairs_file, out, validate_every_steps=8)
    first.on_epoch_end = stop_at_eight
    with pytest.raises(StopAfter):
        first.train(train, valid)
    resumed, _ = _trainer(tiny_pairs_file, out, validate_every_steps=8)
    resumed.resume_from(out)
    assert (resumed.step, resumed.epoch_step) == (8, 3)  # 5 batches an epoch: 3 into epoch 2
    assert resumed.elapsed > 0
    resumed_rates = _record_rates(resumed)
    resumed.train(train, valid)
    assert resumed.step == 20
    assert resumed_rates == pytest.approx(whole_rates[8:])


@pytest.mark.slow  # trains its own tiny models
def test_weight_averaging_is_kept_only_when_it_validates_better(
    tiny_pairs_file: Path, tmp_path: Path
) -> None:
    trainer, (train, valid) = _trainer(
        tiny_pairs_file, tmp_path / "avg", validate_every_steps=4, average_last=3
    )
    result = trainer.train(train, valid)
    single_best = min(h["valid_loss"] for h in result.history)
    assert result.best_valid_loss <= single_best
    averaged = "averaged_validations" in trainer.info
    assert averaged == (result.best_valid_loss < single_best)
    assert math.isfinite(result.best_valid_loss)
