"""`kill -9` in the middle of a retraining: of the training process, or of the process running
the job. The active model, every earlier version and the data stay as they were, the run is
marked failed (at once, or at the next start), no copy of the pairs is left on disk, and the next
run works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bot.retraining import job, recovery
from bot.retraining.contract import JOB, WorkerStatus, read_status
from bot.retraining.job import RetrainOutcome
from config import Settings
from storage import model_versions, training_runs
from storage.conversations import ChatRef, get_or_create_chat, get_or_create_user, save_turn
from storage.database import Database
from storage.tables import Message
from storage.training_runs import RunInfo
from tests.support.retraining import (
    ANN,
    BOB,
    PATTERN,
    cli_env,
    seed_pattern,
    tree_digest,
    with_retrain,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # real processes trained, then killed

REPO_ROOT = Path(__file__).resolve().parents[2]


def _endless(settings: Settings) -> Settings:
    """Training that would run for many minutes: it is always killed mid-way."""
    return with_retrain(
        settings,
        training={
            "max_epochs": 100_000,
            "early_stopping_patience": 100_000,
            "time_budget_minutes": 10,
        },
    )


def _wait_for_training(
    settings: Settings, db: Database, timeout: float = 60
) -> tuple[WorkerStatus, RunInfo]:
    """The worker's heartbeat once it has finished an epoch (a checkpoint is half-way there)."""

    def heartbeat() -> tuple[WorkerStatus, RunInfo] | None:
        run = db.read(training_runs.running_run)
        if run is None:
            return None
        status = read_status(recovery.work_dir(settings, run.id))
        if status and status.phase == "training" and (status.epoch or 0) >= 1:
            return status, run
        return None

    return wait_until(heartbeat, timeout, what="the worker to report a finished epoch")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie has exited


def _messages(db: Database) -> int:
    with db.session() as s:
        return s.query(Message).count()


@pytest.fixture
def history(db: Database, model_dir: Path, tmp_path: Path) -> dict[str, dict[str, str]]:
    """An earlier version besides the active one, and the digests of both directories."""
    older = tmp_path / "older"
    subprocess.run(["cp", "-r", str(model_dir), str(older)], check=True)
    with db.begin() as s:
        model_versions.register_version(s, "older", str(older))
        model_versions.activate_version(s, "older")
        model_versions.register_version(s, "default", str(model_dir.resolve()))
        model_versions.activate_version(s, "default")
    seed_pattern(db)
    return {"default": tree_digest(model_dir), "older": tree_digest(older)}


def _assert_untouched(
    db: Database, model_dir: Path, tmp_path: Path, digests: dict[str, dict[str, str]]
) -> None:
    with db.session() as s:
        assert [v.name for v in model_versions.list_versions(s)] == ["older", "default"]
        assert model_versions.get_active_version(s).name == "default"  # type: ignore[union-attr]
    assert tree_digest(model_dir) == digests["default"]
    assert tree_digest(tmp_path / "older") == digests["older"]
    assert _messages(db) == 2 * len(PATTERN)


def test_kill_9_of_the_training_process_fails_the_run_and_changes_nothing_else(
    settings: Settings,
    db: Database,
    model_dir: Path,
    tmp_path: Path,
    history: dict[str, dict[str, str]],
) -> None:
    outcome: list[RetrainOutcome] = []
    runner = threading.Thread(
        target=lambda: outcome.append(job.run_retrain(_endless(settings), db, trigger="test"))
    )
    runner.start()
    status, run = _wait_for_training(settings, db)
    assert (run.metrics or {})["worker_pid"] == status.pid

    os.kill(status.pid, signal.SIGKILL)
    runner.join(timeout=60)

    [killed] = outcome
    assert killed.status == "failed"
    assert killed.error == "the training process was killed (signal 9)"
    run = db.read(training_runs.get_run, killed.run_id)
    assert run.status == "failed" and run.error == killed.error
    assert run.last_message_id is None  # nothing counted as trained on
    _assert_untouched(db, model_dir, tmp_path, history)
    assert list(settings.versions_dir.iterdir()) == []  # the work directory is gone

    following = job.run_retrain(settings, db, trigger="test")
    assert following.status == "promoted" and following.parent_version == "default"
    assert following.metrics.pairs is not None
    assert following.metrics.pairs.new == len(PATTERN)  # the same pairs again


SECRET = "zorblaxian"  # a word nobody else uses: where it is found, a copy of the pairs is


def test_a_killed_worker_leaves_no_copy_of_the_pairs_on_disk(
    settings: Settings, db: Database
) -> None:
    seed_pattern(db)

    def confide(session: Session) -> None:
        chat = get_or_create_chat(session, ChatRef("telegram", -9001, "group"))
        ann, bob = get_or_create_user(session, ANN), get_or_create_user(session, BOB)
        save_turn(session, chat_id=chat, user_id=ann, text=f"my password is {SECRET}")
        save_turn(session, chat_id=chat, user_id=bob, text=f"{SECRET} is a strong one")

    db.transact(confide)
    outcome: list[RetrainOutcome] = []
    runner = threading.Thread(
        target=lambda: outcome.append(job.run_retrain(_endless(settings), db, trigger="test"))
    )
    runner.start()
    status, run = _wait_for_training(settings, db)
    # The job file held the pairs as they were sent: the worker deleted it once read.
    assert not (recovery.work_dir(settings, run.id) / JOB).exists()

    os.kill(status.pid, signal.SIGKILL)
    runner.join(timeout=60)

    [killed] = outcome
    assert killed.status == "failed"
    database = db.url.database
    assert database is not None and Path(database).parent == settings.data_dir
    copies = [
        path
        for path in settings.data_dir.rglob("*")
        if path.is_file()
        and not path.name.startswith(Path(database).name)  # the logs themselves, and journals
        and SECRET.encode() in path.read_bytes()
    ]
    assert copies == []


def test_kill_9_of_the_job_process_is_failed_at_the_next_start_and_the_next_run_works(
    settings: Settings,
    db: Database,
    model_dir: Path,
    tmp_path: Path,
    history: dict[str, dict[str, str]],
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(cli_env(_endless(settings)), PYTHONPATH=str(REPO_ROOT))
    cli = subprocess.Popen(
        [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", "retrain"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        status, orphan = _wait_for_training(settings, db)
        cli.kill()  # SIGKILL: no cleanup of any kind in the job's process
        cli.wait()
    finally:
        if cli.poll() is None:
            cli.kill()
    wait_until(
        lambda: not _alive(status.pid), 10, what="the training process to die with its parent"
    )
    assert db.read(training_runs.get_run, orphan.id).status == "running"  # nobody told the db
    _assert_untouched(db, model_dir, tmp_path, history)
    # No pairs left behind: the orphaned training process removed the whole scratch directory
    # (job, log, checkpoints) before it exited, without waiting for the next start.
    assert not recovery.work_dir(settings, orphan.id).exists()

    following = job.run_retrain(settings, db, trigger="test")

    dead = db.read(training_runs.get_run, orphan.id)
    assert dead.status == "failed"
    assert dead.error == f"the process running it (pid {cli.pid} on {os.uname().nodename}) died"
    assert following.status == "promoted" and following.run_id == orphan.id + 1
    leftovers = [p.name for p in settings.versions_dir.iterdir()]
    assert leftovers == [following.candidate_version]  # the dead run's work directory is gone


def test_a_run_whose_heartbeat_stopped_is_failed_by_another_process_and_its_owner_stops(
    settings: Settings,
    db: Database,
    model_dir: Path,
    tmp_path: Path,
    history: dict[str, dict[str, str]],
) -> None:
    """The owner is frozen (SIGSTOP): its pid is alive, so only the heartbeat can tell. Another
    process fails the run; the owner, thawed, hears it at its next beat and stops its worker."""
    beating = with_retrain(_endless(settings), heartbeat_seconds=0.5, dead_after_seconds=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(cli_env(beating), PYTHONPATH=str(REPO_ROOT))
    cli = subprocess.Popen(
        [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())", "retrain"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        status, run = _wait_for_training(settings, db)
        os.kill(cli.pid, signal.SIGSTOP)
        assert recovery.recover(beating, db) == []  # alive, and its heartbeat is recent

        failed = wait_until(
            lambda: recovery.recover(beating, db), 15, what="the silent run to be failed"
        )

        assert failed == [run.id]
        dead = db.read(training_runs.get_run, run.id)
        assert dead.status == "failed"
        assert (dead.error or "").startswith("its process stopped sending heartbeats")
        assert db.read(training_runs.running_run) is None  # the one-run lock is free again
        os.kill(cli.pid, signal.SIGCONT)
        out, _ = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            os.kill(cli.pid, signal.SIGCONT)
            cli.kill()
            cli.wait()
    wait_until(lambda: not _alive(status.pid), 10, what="the owner to stop its worker")
    assert cli.returncode == 1
    assert '"error": "stopped: another process failed the run' in out
    _assert_untouched(db, model_dir, tmp_path, history)  # nothing promoted by the frozen owner
    assert db.read(training_runs.get_run, run.id).error == dead.error  # its reason stands
