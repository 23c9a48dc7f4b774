"""`chatbot retrain`, `chatbot model list | activate | rollback`, `chatbot schedule ...`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.cli import main
from config import Settings
from storage import model_versions, training_runs
from storage.database import Database
from tests.support.retraining import cli_env


@pytest.fixture(autouse=True)
def environment(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in cli_env(settings).items():
        monkeypatch.setenv(name, value)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, needle: str) -> None:
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert needle in err


def test_schedule_add_list_remove(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "schedule", "add", "--cron", "0 3 * * *")
    assert code == 0 and out.startswith("retrain-") and "0 3 * * *  next run " in out
    schedule_id = out.split()[0]
    code, out, _ = _run(capsys, "schedule", "list")
    assert code == 0 and out.startswith(f"{schedule_id}  0 3 * * *  next run ")
    assert _run(capsys, "schedule", "remove", schedule_id)[0] == 0
    assert _run(capsys, "schedule", "list")[1] == "no retraining schedules\n"
    code, _, err = _run(capsys, "schedule", "remove", schedule_id)
    _one_line_error(code, err, f"no schedule with id '{schedule_id}'")


@pytest.mark.parametrize("expression", ["0 3 * *", "0 3 * * mon-funday", "*/0 * * * *"])
def test_a_malformed_cron_expression_exits_2_and_stores_nothing(
    capsys: pytest.CaptureFixture[str], expression: str
) -> None:
    code, _, err = _run(capsys, "schedule", "add", "--cron", expression)
    _one_line_error(code, err, "invalid cron expression")
    assert _run(capsys, "schedule", "list")[1] == "no retraining schedules\n"


def test_a_cron_expression_that_never_runs_exits_2_and_stores_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _run(capsys, "schedule", "add", "--cron", "0 0 30 2 *")
    _one_line_error(code, err, "'0 0 30 2 *': it never runs")
    assert _run(capsys, "schedule", "list")[1] == "no retraining schedules\n"


def test_model_list_activate_and_rollback(
    capsys: pytest.CaptureFixture[str], db: Database, model_dir: Path, tmp_path: Path
) -> None:
    assert "no model versions registered" in _run(capsys, "model", "list")[1]
    copy = shutil.copytree(model_dir, tmp_path / "v2")
    with db.begin() as s:
        model_versions.register_version(s, "default", str(model_dir))
        model_versions.activate_version(s, "default")
        model_versions.register_version(s, "v2", str(copy), metrics={"base_ppl": 1.5})
        model_versions.register_version(s, "broken", str(tmp_path / "missing"))

    assert _run(capsys, "model", "activate", "v2") == (0, "active model version: v2\n", "")
    listed = _run(capsys, "model", "list")[1].splitlines()
    assert listed[0].startswith("  default ") and listed[1].startswith("* v2 ")
    assert "base ppl 1.500" in listed[1]
    code, _, err = _run(capsys, "model", "activate", "broken")
    _one_line_error(code, err, "checkpoint directory not found")
    _one_line_error(*_run(capsys, "model", "activate", "nope")[::2], "no model version named")
    assert db.read(model_versions.get_active_version).name == "v2"  # type: ignore[union-attr]

    code, out, _ = _run(capsys, "model", "rollback")
    assert (code, out) == (0, "rolled back: active model version is default\n")
    code, _, err = _run(capsys, "model", "rollback")
    _one_line_error(code, err, "nothing to roll back to")


def test_retrain_with_too_few_pairs_or_a_run_in_progress_exits_2(
    capsys: pytest.CaptureFixture[str], db: Database
) -> None:
    code, _, err = _run(capsys, "retrain")
    _one_line_error(code, err, "only 0 new training pairs since the last run, need 4")
    code, _, err = _run(capsys, "retrain", "--force")
    _one_line_error(code, err, "need 2")
    with db.begin() as s:
        running = training_runs.start_run(s, trigger="other")
        training_runs.set_running_metrics(s, running.id, {"owner": {"host": "elsewhere", "pid": 1}})
    code, _, err = _run(capsys, "retrain")
    _one_line_error(code, err, f"a retraining is already running (run {running.id}")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--nnodes", "2"], "nnodes > 1 needs rdzv_endpoint (host:port of the rendezvous)"),
        (["--join", "--nproc", "2"], "--join trains with another node: give --nnodes"),
        (
            ["--join", "--force", "--nnodes", "2", "--rdzv-endpoint", "h:1"],
            "--force belongs to the node that starts the run",
        ),
    ],
)
def test_distributed_options_that_cannot_work_exit_2_before_any_work(
    capsys: pytest.CaptureFixture[str], db: Database, argv: list[str], needle: str
) -> None:
    code, _, err = _run(capsys, "retrain", *argv)
    _one_line_error(code, err, needle)
    assert db.read(training_runs.list_runs) == []
