"""The job and the result cross to and from the worker process as JSON and come back typed."""

from __future__ import annotations

import math
from pathlib import Path

from bot.retraining.contract import (
    RESULT,
    PairSizes,
    TokenizedTurnsPair,
    TrainingSummary,
    WorkerJob,
    WorkerResult,
)
from bot.retraining.gate import Scores
from config import TrainingSettings


def _result(work: Path, candidate: Scores) -> WorkerResult:
    return WorkerResult(
        candidate_dir=work / "candidate",
        words_added=2,
        pairs=PairSizes(train=6, heldout=2, base_sample=100, base_valid=10),
        training=TrainingSummary(
            epochs=3,
            steps=30,
            seconds=1.5,
            stopped_because="max_epochs",
            best_valid_loss=None,
            device="cpu",
        ),
        parent=Scores(base_ppl=40.0, new_ppl=90.0),
        candidate=candidate,
    )


def test_a_job_reaches_the_worker_with_its_settings_typed(tmp_path: Path) -> None:
    job = WorkerJob(
        parent_dir=tmp_path / "parent",
        work_dir=tmp_path,
        new_train=[TokenizedTurnsPair(context=[["hi"], ["how", "are", "you"]], reply=["fine"])],
        new_heldout=[TokenizedTurnsPair(context=[["hello"]], reply=["hi", "!"])],
        base_sources=["chitchat"],
        base_sample_pairs=100,
        new_pair_repeats=2,
        new_word_min_count=1,
        max_new_words=10,
        allowed_new_words=["fine"],
        training=TrainingSettings(max_epochs=3, learning_rate=5e-4, time_budget_minutes=30),
        info={"parent_version": "default", "retrain_run": 7},
    )
    loaded = WorkerJob.load(job.save())
    assert loaded == job
    assert isinstance(loaded.training, TrainingSettings) and loaded.training.learning_rate == 5e-4
    assert loaded.new_train[0].context == [["hi"], ["how", "are", "you"]]


def test_a_diverged_candidates_perplexities_cross_as_nan_and_infinity(tmp_path: Path) -> None:
    _result(tmp_path, Scores(base_ppl=math.nan, new_ppl=math.inf)).save(tmp_path)
    loaded = WorkerResult.load(tmp_path)
    assert loaded is not None
    assert math.isnan(loaded.candidate.base_ppl) and loaded.candidate.new_ppl == math.inf
    assert loaded.parent == Scores(base_ppl=40.0, new_ppl=90.0)


def test_no_result_or_a_damaged_one_reads_as_none(tmp_path: Path) -> None:
    assert WorkerResult.load(tmp_path) is None
    (tmp_path / RESULT).write_text('{"words_added": "many"}')
    assert WorkerResult.load(tmp_path) is None
