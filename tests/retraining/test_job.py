"""A retraining run end to end with a tiny model: pairs from a seeded database, the worker
process, the gate, promotion or rejection, and what a running service answers afterwards."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.dialogue import DialogueService, Incoming
from bot.model_slot import ModelSlot
from bot.retraining import job, versions
from bot.retraining.collect import collect, split_heldout
from bot.retraining.errors import NotEnoughPairsError
from config import DialogueSettings, Settings
from nlp.checkpoint import load_checkpoint
from storage import model_versions, training_runs
from storage.database import Database
from storage.errors import TrainingRunInProgressError
from tests.support.retraining import (
    PATTERN,
    PATTERN_REPLY,
    seed_pattern,
    tree_digest,
    with_retrain,
)


def _ask(text: str) -> Incoming:
    return Incoming("console", "tester", "tester", text)


@pytest.mark.slow  # a real fine-tune
async def test_a_candidate_that_learnt_a_new_pattern_is_promoted_and_answers_it(
    settings: Settings, db: Database, model_dir: Path
) -> None:
    # The service runs before, during and after the retraining, as the bot would.
    slot = ModelSlot(settings.model_dir, settings.decoding, db, check_every_s=0.0)
    service = DialogueService(db, slot, DialogueSettings())
    try:
        before = await service.respond(_ask(PATTERN[0]))
        seed_pattern(db)

        outcome = job.run_retrain(settings, db, trigger="test")

        assert outcome.status == "promoted", outcome.metrics
        assert outcome.parent_version == versions.VERSION_ZERO
        assert outcome.active_version == outcome.candidate_version
        trained, _ = split_heldout(
            collect(settings, db, None, model_dir).pairs, settings.retrain.heldout_fraction
        )
        asked = [p.context_text for p in trained]
        assert asked, "some pattern pairs are trained on"
        for question in PATTERN:
            if PATTERN.index(question) < 2 or question.lower() in asked:
                answer = await service.respond(_ask(question))
                assert answer.text.lower() == PATTERN_REPLY, question
                assert answer.model_version == outcome.candidate_version
        assert before.text.lower() != PATTERN_REPLY
        assert (await service.respond(_ask("hello"))).text == "Hi there!"  # not forgotten
    finally:
        await service.close()

    with db.session() as s:
        active = model_versions.get_active_version(s)
        zero = model_versions.get_version(s, versions.VERSION_ZERO)
        run = training_runs.get_run(s, outcome.run_id)
    assert active is not None and active.name == outcome.candidate_version
    assert active.parent_id == zero.id and Path(zero.checkpoint_path) == model_dir.resolve()
    directory = Path(active.checkpoint_path)
    assert directory.parent == settings.versions_dir and directory != model_dir
    assert "colour" in load_checkpoint(directory).vocab  # the vocabulary grew
    assert not any(p.name.startswith(".") for p in settings.versions_dir.iterdir())

    assert run.status == "succeeded" and run.model_version_id == active.id
    assert run.new_pairs == len(PATTERN) and run.total_pairs is not None
    assert run.last_message_id is not None
    recorded = run.metrics or {}
    assert recorded["decision"] == "promoted"
    assert set(recorded["active"]) == set(recorded["candidate"]) == {"base_ppl", "new_ppl"}
    assert recorded["candidate"]["new_ppl"] < recorded["active"]["new_ppl"]
    assert recorded["pairs"]["new"] == len(PATTERN) and recorded["pairs"]["heldout"] >= 1
    assert recorded["words_added"] >= 2 and recorded["seconds"] > 0


@pytest.mark.slow  # a real fine-tune
def test_a_candidate_made_worse_on_purpose_is_rejected_and_the_active_model_stays(
    settings: Settings, db: Database, model_dir: Path
) -> None:
    seed_pattern(db)
    before = tree_digest(model_dir)
    # A learning rate fifty times too high wrecks what the model knew.
    wrecking = with_retrain(settings, training={"learning_rate": 0.5, "max_epochs": 3})

    outcome = job.run_retrain(wrecking, db, trigger="test")

    assert outcome.status == "rejected"
    assert outcome.active_version == versions.VERSION_ZERO
    with db.session() as s:
        assert [v.name for v in model_versions.list_versions(s)] == [versions.VERSION_ZERO]
        run = training_runs.get_run(s, outcome.run_id)
    assert tree_digest(model_dir) == before
    assert not settings.versions_dir.exists() or not any(settings.versions_dir.iterdir())
    assert run.status == "succeeded" and run.model_version_id is None
    recorded = run.metrics or {}
    assert recorded["decision"] == "rejected"
    assert recorded["candidate"]["base_ppl"] is None or (
        recorded["candidate"]["base_ppl"] > recorded["base_ppl_limit"]
    )
    # The watermarks did not move: the same pairs are offered to the next run.
    assert run.last_message_id is None and run.last_taught_pair_id is None
    again = collect(settings, db, db.read(training_runs.last_successful_run), model_dir)
    assert len(again) == len(PATTERN)


def test_too_few_new_pairs_start_nothing(settings: Settings, db: Database) -> None:
    seed_pattern(db, PATTERN[:3])
    with pytest.raises(NotEnoughPairsError, match=r"only 3 new training pairs .* need 4"):
        job.start_retrain(settings, db, trigger="test")
    with db.session() as s:
        assert training_runs.list_runs(s) == []
        assert model_versions.list_versions(s) == []


def test_one_retraining_at_a_time(settings: Settings, db: Database) -> None:
    seed_pattern(db)
    first = job.start_retrain(settings, db, trigger="test")

    with pytest.raises(TrainingRunInProgressError, match=f"run {first.run.id}"):
        job.start_retrain(settings, db, trigger="test")

    cancelled = threading.Event()
    cancelled.set()  # e.g. the bot stopping: the worker is stopped and the run recorded failed
    outcome = job.complete_retrain(settings, db, first, cancel=cancelled)
    assert outcome.status == "failed" and "cancelled" in (outcome.error or "")
    with db.session() as s:
        assert training_runs.get_run(s, first.run.id).status == "failed"
        assert training_runs.running_run(s) is None


def test_a_worker_past_its_time_limit_is_stopped_and_the_run_fails(
    settings: Settings, db: Database, model_dir: Path
) -> None:
    seed_pattern(db)
    before = tree_digest(model_dir)
    hurried = with_retrain(settings, training={"time_budget_minutes": 0.001}, grace_minutes=0)

    outcome = job.run_retrain(hurried, db, trigger="test")

    assert outcome.status == "failed"
    assert "ran past its time limit" in (outcome.error or "")
    with db.session() as s:
        run = training_runs.get_run(s, outcome.run_id)
        assert [v.name for v in model_versions.list_versions(s)] == [versions.VERSION_ZERO]
    assert run.status == "failed" and run.error == outcome.error
    assert tree_digest(model_dir) == before
    assert not any(settings.versions_dir.iterdir())  # the work directory is gone


@pytest.mark.slow  # starts a worker process
def test_a_crashing_worker_fails_the_run_with_the_reason(
    settings: Settings, db: Database, model_dir: Path, tmp_path: Path
) -> None:
    seed_pattern(db)
    broken = with_retrain(settings, base_sources=[str(tmp_path / "gone.tsv")])

    outcome = job.run_retrain(broken, db, trigger="test")

    assert outcome.status == "failed"
    assert (outcome.error or "").startswith("the training process failed (exit code 1): ")
    assert "data file not found" in (outcome.error or "")
    assert db.read(training_runs.get_run, outcome.run_id).status == "failed"
    assert outcome.active_version == versions.VERSION_ZERO
