"""`chatbot retrain --nproc 2`: fine-tuning with two data-parallel processes, end to end, and a
rank that dies failing the run cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bot.cli import main
from bot.retraining import job, recovery
from bot.retraining.contract import read_status
from bot.retraining.job import RetrainOutcome
from config import Settings
from storage import model_versions, training_runs
from storage.database import Database
from tests.support.retraining import cli_env, seed_pattern, tree_digest, with_retrain
from tests.support.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())"]

pytestmark = pytest.mark.slow  # each test starts a launcher and two ranks that import torch


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_retrain_with_two_processes_stops_together_on_the_time_budget_and_decides(
    settings: Settings,
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Training runs until the time budget: the ranks must agree on the step to stop at, or
    one would wait for the other forever (and the run fail)."""
    seed_pattern(db)
    budgeted = with_retrain(
        settings,
        training={
            "max_epochs": 100_000,
            "early_stopping_patience": 100_000,
            "time_budget_minutes": 0.1,  # 6 s of training
        },
    )
    monkeypatch.chdir(tmp_path)
    for name, value in cli_env(budgeted).items():
        monkeypatch.setenv(name, value)

    code = main(["retrain", "--nproc", "2"])

    outcome = json.loads(capsys.readouterr().out)
    assert code == 0, outcome
    assert outcome["status"] in ("promoted", "rejected") and outcome["error"] is None
    training = outcome["metrics"]["training"]
    assert training["processes"] == 2 and training["device"] == "cpu"
    assert training["stopped_because"] == "time_budget" and training["steps"] > 0
    run = db.read(training_runs.get_run, outcome["run"])
    assert run.status == "succeeded"
    assert list(p.name for p in settings.versions_dir.iterdir()) == (
        [outcome["candidate_version"]] if outcome["status"] == "promoted" else []
    )


def test_a_rank_that_dies_fails_the_run_and_leaves_the_active_model_as_it_was(
    settings: Settings, db: Database, model_dir: Path
) -> None:
    seed_pattern(db)
    endless = with_retrain(
        settings,
        nproc=2,
        training={
            "max_epochs": 100_000,
            "early_stopping_patience": 100_000,
            "time_budget_minutes": 10,
        },
    )
    before = tree_digest(model_dir)
    outcome: list[RetrainOutcome] = []
    cancel = threading.Event()  # stops the endless run if the test fails before the kill
    runner = threading.Thread(
        target=lambda: outcome.append(job.run_retrain(endless, db, trigger="test", cancel=cancel))
    )
    runner.start()

    def training_ranks() -> list[int] | None:
        run = db.read(training_runs.running_run)
        status = read_status(recovery.work_dir(settings, run.id)) if run else None
        if status and status.phase == "training" and (status.epoch or 0) >= 1:
            return status.rank_pids
        return None

    try:
        ranks = wait_until(training_ranks, 90, what="both ranks to train an epoch")
        assert len(ranks) == 2
        os.kill(ranks[1], signal.SIGKILL)
        runner.join(timeout=90)
    finally:
        cancel.set()
        runner.join()

    [failed] = outcome
    assert failed.status == "failed"
    assert failed.error == (
        "the data-parallel training failed: rank 1 of 2 was killed by signal 9 (SIGKILL)"
    )
    run = db.read(training_runs.get_run, failed.run_id)
    assert run.status == "failed" and run.error == failed.error
    assert tree_digest(model_dir) == before
    active = db.read(model_versions.get_active_version)
    assert active is not None and active.name == "default"
    assert list(settings.versions_dir.iterdir()) == []  # the work directory is gone
    wait_until(lambda: not _alive(ranks[0]), 10, what="the other rank to stop")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_second_node_joins_the_run_without_a_database(
    settings: Settings,
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two nodes on one machine: the node that starts the run owns it; the joining node is told
    nothing but where to meet, and gets the model and the pairs from the first node's main rank
    (whichever global rank the rendezvous gives it)."""
    seed_pattern(db)
    budgeted = with_retrain(settings, training={"max_epochs": 100_000, "time_budget_minutes": 0.05})
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = ["--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", endpoint]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    # The joining node has no database: a URL that cannot be reached proves it needs none.
    env.update(cli_env(budgeted), CHATBOT_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    env["PYTHONPATH"] = str(REPO_ROOT)
    joiner = subprocess.Popen(
        [*CLI, "retrain", "--join", *nodes],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        monkeypatch.chdir(tmp_path)
        for name, value in cli_env(budgeted).items():
            monkeypatch.setenv(name, value)

        code = main(["retrain", *nodes])

        joined, _ = joiner.communicate(timeout=60)
    finally:
        if joiner.poll() is None:
            joiner.kill()
            joiner.wait()
    outcome = json.loads(capsys.readouterr().out)
    assert code == 0, outcome
    assert joiner.returncode == 0, joined.decode(errors="replace")[-3000:]
    assert outcome["status"] in ("promoted", "rejected")
    assert outcome["metrics"]["training"]["processes"] == 2
