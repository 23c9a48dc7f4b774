"""Training runs: recorded start to finish, one at a time, stale ones released."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import update

from storage import model_versions, training_runs
from storage.database import Database
from storage.errors import NotFoundError, TrainingRunInProgressError
from storage.tables import TrainingRun, utcnow


def test_a_run_is_recorded_from_start_to_success(database: Database) -> None:
    with database.begin() as session:
        run = training_runs.start_run(session, trigger="admin")
    assert (run.status, run.trigger, run.finished_at) == ("running", "admin", None)
    with database.begin() as session:
        version = model_versions.register_version(session, "ft-1", "models/ft-1")
        done = training_runs.finish_run(
            session,
            run.id,
            new_pairs=12,
            total_pairs=5012,
            metrics={"bleu": 4.2},
            model_version_id=version.id,
            last_message_id=99,
            last_taught_pair_id=3,
        )
    assert done.finished_at is not None
    assert done.status == "succeeded" and done.finished_at >= done.started_at
    assert (done.new_pairs, done.total_pairs, done.metrics) == (12, 5012, {"bleu": 4.2})
    assert (done.model_version_id, done.last_message_id, done.last_taught_pair_id) == (
        version.id,
        99,
        3,
    )
    with database.session() as session:
        assert training_runs.last_successful_run(session) == done
        assert training_runs.running_run(session) is None


def test_only_one_run_at_a_time(database: Database) -> None:
    with database.begin() as session:
        first = training_runs.start_run(session)
    with (
        pytest.raises(TrainingRunInProgressError, match=f"run {first.id} is already running"),
        database.begin() as session,
    ):
        training_runs.start_run(session)
    with database.begin() as session:
        failed = training_runs.fail_run(session, first.id, "out of memory\x00 \ud800")
        second = training_runs.start_run(session)
    assert failed.error is not None
    assert failed.status == "failed" and failed.error.startswith("out of memory")
    with database.session() as session:
        assert [run.id for run in training_runs.list_runs(session)] == [second.id, first.id]
        assert training_runs.last_successful_run(session) is None


def test_finishing_a_run_that_is_not_running_is_an_error(database: Database) -> None:
    with database.begin() as session:
        run = training_runs.start_run(session)
        training_runs.finish_run(session, run.id)
    with pytest.raises(NotFoundError), database.begin() as session:
        training_runs.fail_run(session, run.id, "too late")


def test_stale_runs_are_failed_so_a_new_run_can_start(database: Database) -> None:
    with database.begin() as session:
        stuck = training_runs.start_run(session)
        session.execute(
            update(TrainingRun)
            .where(TrainingRun.id == stuck.id)
            .values(started_at=utcnow() - timedelta(hours=7))
        )
    with pytest.raises(TrainingRunInProgressError), database.begin() as session:
        training_runs.start_run(session, stale_after=timedelta(hours=8))
    with database.begin() as session:
        fresh = training_runs.start_run(session, stale_after=timedelta(hours=6))
        old = training_runs.get_run(session, stuck.id)
    assert old.error is not None
    assert old.status == "failed" and "stale" in old.error
    assert fresh.status == "running"


def test_concurrent_starts_give_exactly_one_run(database: Database) -> None:
    contenders = 8
    start = threading.Barrier(contenders)
    outcomes: list[str] = []

    def contender() -> None:
        start.wait()
        try:
            with database.begin() as session:
                training_runs.start_run(session, trigger="scheduler")
            outcomes.append("started")
        except TrainingRunInProgressError:
            outcomes.append("refused")
        except BaseException as exc:
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=contender) for _ in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * (contenders - 1) + ["started"]
