"""Run heartbeats (a run whose heartbeat stopped is failed, from any process) and schedule
firings (one claim per schedule and scheduled time)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from storage import schedule_firings, training_runs
from storage.database import Database
from storage.tables import utcnow


def test_a_run_starts_with_a_heartbeat_and_beats_until_it_ends(database: Database) -> None:
    with database.begin() as session:
        run = training_runs.start_run(session, trigger="test")
    assert run.heartbeat_at == run.started_at
    later = utcnow() + timedelta(seconds=5)
    with database.begin() as session:
        assert training_runs.beat(session, run.id, now=later)
    assert database.read(training_runs.get_run, run.id).heartbeat_at == later
    with database.begin() as session:
        training_runs.fail_run(session, run.id, "boom")
        assert not training_runs.beat(session, run.id)  # the owner learns the run is over


def test_only_a_run_whose_heartbeat_stopped_is_failed(database: Database) -> None:
    with database.begin() as session:
        run = training_runs.start_run(session, trigger="test")
        training_runs.beat(session, run.id, now=utcnow() - timedelta(seconds=30))
    with database.begin() as session:
        assert training_runs.fail_silent_runs(session, timedelta(seconds=60)) == []
    assert database.read(training_runs.get_run, run.id).status == "running"

    with database.begin() as session:
        [silent] = training_runs.fail_silent_runs(session, timedelta(seconds=10))
    failed = database.read(training_runs.get_run, run.id)
    assert silent.id == run.id and failed.status == "failed"
    assert failed.error is not None and failed.error.startswith(
        "its process stopped sending heartbeats (the last at "
    )
    with database.begin() as session:  # and its owner, beating again, hears that it is over
        assert not training_runs.beat(session, run.id)


def test_a_firing_is_claimed_once(database: Database) -> None:
    at = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    with database.begin() as session:
        assert schedule_firings.claim_firing(session, "retrain-1", at, "host-a:1")
    with database.begin() as session:
        assert not schedule_firings.claim_firing(session, "retrain-1", at, "host-b:2")
        assert schedule_firings.claim_firing(session, "retrain-2", at, "host-b:2")
        assert schedule_firings.claim_firing(session, "retrain-1", at + timedelta(days=1), "b")
    assert database.read(schedule_firings.firing_claimant, "retrain-1", at) == "host-a:1"


def test_of_two_schedulers_claiming_one_firing_at_once_exactly_one_wins(
    database: Database,
) -> None:
    at = datetime(2026, 11, 29, 3, 0, tzinfo=UTC)
    barrier = threading.Barrier(2)
    won: list[bool] = []

    def claim(who: str) -> None:
        barrier.wait()
        won.append(database.transact(schedule_firings.claim_firing, "retrain-1", at, who))

    threads = [threading.Thread(target=claim, args=(who,)) for who in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(won) == [False, True]


def test_old_claims_are_forgotten(database: Database) -> None:
    at = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    with database.begin() as session:
        schedule_firings.claim_firing(session, "retrain-1", at, "a")
    with database.begin() as session:
        assert schedule_firings.forget_firings(session, timedelta(days=7)) == 0
        later = utcnow() + timedelta(days=8)
        assert schedule_firings.forget_firings(session, timedelta(days=7), now=later) == 1
    assert database.read(schedule_firings.firing_claimant, "retrain-1", at) is None
