"""Recovery of runs whose process died, judged without a pid where the pid is on another host:
by the run's heartbeat."""

from __future__ import annotations

from datetime import timedelta

from bot.retraining import recovery
from config import Settings
from storage import training_runs
from storage.database import Database
from storage.tables import utcnow
from tests.support.retraining import with_retrain

ELSEWHERE = {"host": "another-host.example", "pid": 4242, "pid_started": 1}


def _run_on_another_host(db: Database, heartbeat_age: timedelta) -> int:
    with db.begin() as session:
        run = training_runs.start_run(session, trigger="schedule")
        training_runs.set_running_metrics(session, run.id, {"owner": ELSEWHERE})
        training_runs.beat(session, run.id, now=utcnow() - heartbeat_age)
    return run.id


def test_a_run_on_another_host_with_a_recent_heartbeat_is_left_running(
    settings: Settings, db: Database
) -> None:
    run_id = _run_on_another_host(db, timedelta(seconds=5))
    assert recovery.recover(with_retrain(settings, dead_after_seconds=60), db) == []
    assert db.read(training_runs.get_run, run_id).status == "running"


def test_a_run_on_another_host_whose_heartbeat_stopped_is_failed_and_its_lock_freed(
    settings: Settings, db: Database
) -> None:
    run_id = _run_on_another_host(db, timedelta(seconds=90))
    settings.versions_dir.mkdir(parents=True)
    leftover = recovery.work_dir(settings, run_id)
    leftover.mkdir()

    assert recovery.recover(with_retrain(settings, dead_after_seconds=60), db) == [run_id]

    run = db.read(training_runs.get_run, run_id)
    assert run.status == "failed"
    assert (run.error or "").startswith("its process stopped sending heartbeats (the last at ")
    assert "60 s allowed" in (run.error or "")
    assert db.read(training_runs.running_run) is None
    assert not leftover.exists()  # its pairs are not left on disk
