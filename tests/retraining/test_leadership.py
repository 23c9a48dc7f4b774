"""Scheduler roles: of the processes that may run the schedules exactly one leads, a standby
takes over when the leader dies, and no period of a schedule runs twice or is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from sqlalchemy import update

from bot.leadership import Leadership
from bot.retraining.scheduler import RetrainScheduler, claimant
from bot.roles import LOCK_NAME, SchedulerRole, telegram_runs_schedules
from config import Settings
from storage import schedule_firings
from storage.conversations import ChatRef, UserRef, save_exchange
from storage.database import Database
from storage.leader_lock import LeaderLock, leader_lock
from storage.tables import Message, utcnow
from tests.support.retraining import retrain_settings, with_retrain
from tests.support.scheduling import FIRINGS_FILE_ENV, JOB_FUNCTION, Fired, read_firings
from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHED = ["scheduler"]
POLL_S = 0.5  # retrain.leader_poll_seconds in these tests
PERIOD_S = 2  # the stand-in schedule fires every 2 s
# A standby leads within one poll of the leader's death; the rest is the time a loaded 2-core
# machine may take to run the standby's next attempt and start its scheduler.
TAKEOVER_LIMIT_S = POLL_S + 2.5


@pytest.fixture
def pg_settings(
    database: Database, tmp_path: Path, model_dir: Path, tiny_pairs_file: Path
) -> Settings:
    return retrain_settings(tmp_path, model_dir, database, tiny_pairs_file)


class _CountedLock:
    """The real lock, counting the attempts to take it."""

    def __init__(self, lock: LeaderLock) -> None:
        self.lock, self.attempts = lock, 0
        self.description = lock.description

    def try_acquire(self) -> bool:
        self.attempts += 1
        return self.lock.try_acquire()

    def held(self) -> bool:
        return self.lock.held()

    def release(self) -> None:
        self.lock.release()


class _Campaign:
    """A Leadership whose duties only record that they ran."""

    def __init__(self, db: Database) -> None:
        self.events: list[str] = []
        self.lock = _CountedLock(leader_lock(db, LOCK_NAME))
        self.leadership = Leadership(
            self.lock,
            on_elected=lambda: self.events.append("elected"),
            on_deposed=lambda: self.events.append("deposed"),
            poll_seconds=0.05,
        )


def test_of_two_candidates_one_leads_and_the_other_takes_over_when_it_stops(
    database: Database,
) -> None:
    first, second = _Campaign(database), _Campaign(database)
    first.leadership.start()
    wait_until(first.leadership.elected.is_set, what="the first candidate to lead")
    second.leadership.start()
    try:
        wait_until(lambda: second.lock.attempts >= 5, what="the standby to try five times")
        assert not second.leadership.leading and second.events == []

        first.leadership.stop()  # releases the lock at once

        wait_until(second.leadership.elected.is_set, 5, what="the standby to lead")
        assert first.events == ["elected", "deposed"] and second.events == ["elected"]
    finally:
        second.leadership.stop()
        first.leadership.stop()


def test_telegram_takes_the_scheduler_role_with_sqlite_and_leaves_it_with_postgresql(
    settings: Settings, db: Database
) -> None:
    assert db.dialect == "sqlite"
    assert telegram_runs_schedules(settings, db)
    assert not telegram_runs_schedules(with_retrain(settings, run_scheduler="never"), db)

    class _Postgres:
        dialect = "postgresql"

    postgres = _Postgres()
    assert not telegram_runs_schedules(settings, postgres)  # type: ignore[arg-type]
    always = with_retrain(settings, run_scheduler="always")
    assert telegram_runs_schedules(always, postgres)  # type: ignore[arg-type]


def _start_scheduler(settings: Settings, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        CHATBOT_DATABASE_URL=str(settings.database_url),
        CHATBOT_DATA_DIR=str(settings.data_dir),
        CHATBOT_MODEL_DIR=str(settings.model_dir),
        CHATBOT_RETRAIN__LEADER_POLL_SECONDS=str(POLL_S),
        CHATBOT_RETRAIN__POLL_SECONDS="0.5",
        **{FIRINGS_FILE_ENV: str(tmp_path / "firings.txt")},
    )
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from bot.cli import main; sys.exit(main())",
                *SCHED,
            ],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _log(tmp_path: Path, name: str) -> str:
    return (tmp_path / f"{name}.log").read_text(encoding="utf-8", errors="replace")


def _fired_by(path: Path, pid: int) -> list[Fired]:
    return [fired for fired in read_firings(path) if fired.pid == pid]


@pytest.mark.slow  # two real `chatbot scheduler` processes, one of them killed
@pytest.mark.parametrize("backend", ["postgres", "sqlite"])
def test_two_scheduler_processes_run_each_period_once_and_a_standby_takes_over_a_kill_9(
    pg_settings: Settings, database: Database, tmp_path: Path
) -> None:
    schedules = RetrainScheduler(pg_settings, database)
    assert schedules.list() == []  # APScheduler's table made, as any deployment has it
    firings = tmp_path / "firings.txt"
    leader = _start_scheduler(pg_settings, tmp_path, "leader")
    standby: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: "scheduler: leading" in _log(tmp_path, "leader"), 60, what="a leader")
        # The stand-in job, every PERIOD_S seconds, added once the leader runs (so that no period
        # was due before: periods missed while nothing ran would all be due at once).
        # coalesce=False: a period missed during the takeover must run late, once, not merge
        # with the next (the real schedules coalesce).
        with schedules._store() as store:
            store.add_job(
                JOB_FUNCTION,
                CronTrigger(second=f"*/{PERIOD_S}", timezone="UTC"),
                id="retrain-standin",
                coalesce=False,
            )
        standby = _start_scheduler(pg_settings, tmp_path, "standby")
        wait_until(
            lambda: "scheduler: standing by" in _log(tmp_path, "standby"), 60, what="a standby"
        )
        wait_until(lambda: len(_fired_by(firings, leader.pid)) >= 3, 30, what="3 firings")

        leader.kill()  # SIGKILL: no goodbye; the server drops its session and the lock with it
        killed_at = time.time()
        leader.wait()
        wait_until(
            lambda: "scheduler: leading" in _log(tmp_path, "standby"), 30, what="the takeover"
        )
        took_over_at = time.time()
        wait_until(lambda: len(_fired_by(firings, standby.pid)) >= 3, 30, what="3 more firings")

        standby.send_signal(signal.SIGTERM)
        assert standby.wait(30) == 0, _log(tmp_path, "standby")
    finally:
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    took_over = took_over_at - killed_at
    print(f"takeover after kill -9: {took_over:.2f} s")  # shown with -s
    assert took_over < TAKEOVER_LIMIT_S, f"the standby led {took_over:.1f} s after the kill"
    fired = read_firings(firings)
    dues = [f.due for f in fired]
    assert len(dues) == len(set(dues)), f"a period ran twice: {fired}"
    # Every period from the first firing to the last ran: none lost in the takeover.
    dues.sort()
    assert all(b - a == timedelta(seconds=PERIOD_S) for a, b in pairwise(dues)), (
        firings.read_text() + _log(tmp_path, "leader")[-3000:] + _log(tmp_path, "standby")[-3000:]
    )
    # Only the leader ran jobs until it died, only the standby after.
    pids = [f.pid for f in sorted(fired, key=lambda f: f.at)]
    switch = pids.index(standby.pid)
    assert set(pids[:switch]) == {leader.pid} and set(pids[switch:]) == {standby.pid}
    assert all(f.at < killed_at for f in fired if f.pid == leader.pid)


def test_a_firing_claimed_by_another_process_is_not_run_here(
    settings: Settings, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fence behind the lock: a scheduler that believes it leads still runs a period only
    if it claims it first."""
    firings = tmp_path / "firings.txt"
    monkeypatch.setenv(FIRINGS_FILE_ENV, str(firings))
    due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    db.transact(schedule_firings.claim_firing, "retrain-claimed", due, "elsewhere:1")
    scheduler = RetrainScheduler(settings, db)
    with scheduler._store() as store:
        for job_id in ("retrain-claimed", "retrain-free"):
            store.add_job(JOB_FUNCTION, DateTrigger(due), id=job_id)
    scheduler.start()
    try:
        wait_until(lambda: read_firings(firings), 30, what="the unclaimed firing to run")
    finally:
        scheduler.shutdown()  # waits for the jobs submitted with it

    [fired] = read_firings(firings)
    assert fired.due == due and fired.pid == os.getpid()
    assert db.read(schedule_firings.firing_claimant, "retrain-claimed", due) == "elsewhere:1"
    assert db.read(schedule_firings.firing_claimant, "retrain-free", due) == claimant()


def test_the_leading_scheduler_applies_retention_and_hands_over_when_stopped(
    settings: Settings, db: Database
) -> None:
    with db.begin() as session:
        chat, user = ChatRef("console", "c"), UserRef("console", "u")
        old = utcnow() - timedelta(days=40)
        save_exchange(session, chat, user, "old", "old reply", turn_created_at=old)
    with db.begin() as session:
        session.execute(update(Message).values(created_at=utcnow() - timedelta(days=40)))
    keeping = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"retention_days": 30})}
    )
    first, second = SchedulerRole(keeping, db), SchedulerRole(keeping, db)
    first.start()
    try:
        wait_until(first.leadership.elected.is_set, what="the first role to lead")
        second.start()
        wait_until(lambda: _messages(db) == 0, what="the leader's retention pass")
        assert not second.leadership.leading

        first.shutdown()

        # Elected first, then its scheduler starts: wait for both (a loaded machine shows the gap).
        wait_until(
            lambda: second.leadership.elected.is_set() and second.scheduler.running,
            5,
            what="the standby to take over and start its scheduler",
        )
        assert not first.scheduler.running
    finally:
        second.shutdown()
        first.shutdown()


def _messages(db: Database) -> int:
    with db.session() as session:
        return session.query(Message).count()
