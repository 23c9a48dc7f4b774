"""`chatbot telegram` runs the retraining scheduler, and `chatbot scheduler` runs it without the
bot: on start each fails runs a dead process left running, and a stored schedule that came due
while it was down fires once (misfire grace), its result sent to the admins."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.retraining.scheduler import RetrainScheduler
from config import Settings
from storage import training_runs
from storage.database import Database
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.telegram.harness import ADMIN, ADMIN_ID

REPO_ROOT = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("command", ["telegram", "scheduler"])
async def test_the_process_recovers_dead_runs_and_fires_a_missed_schedule(
    fake: FakeTelegram, tmp_path: Path, sqlite_template: Path, tiny_model_dir: Path, command: str
) -> None:
    db_file = tmp_path / "chatbot.db"
    shutil.copyfile(sqlite_template, db_file)
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        model_dir=tiny_model_dir,
        database_url=f"sqlite:///{db_file}",
    )
    db = Database(settings.resolved_database_url)
    try:
        with db.begin() as s:  # a run whose process was killed
            orphan = training_runs.start_run(s, trigger="cli")
            owner = {"host": socket.gethostname(), "pid": _dead_pid(), "pid_started": None}
            training_runs.set_running_metrics(s, orphan.id, {"owner": owner})
        schedules = RetrainScheduler(settings, db)
        nightly = schedules.add("0 3 * * *")
        schedules.run_soon(nightly.id, datetime.now(UTC) - timedelta(minutes=5))  # missed
    finally:
        db.dispose()
    fake.chats[ADMIN_ID] = tg.private_chat(ADMIN)

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        CHATBOT_TELEGRAM_TOKEN=fake.token,
        CHATBOT_TELEGRAM_BASE_URL=fake.base_url,
        CHATBOT_ADMIN_IDS=str(ADMIN_ID),
        CHATBOT_DATABASE_URL=settings.resolved_database_url,
        CHATBOT_DATA_DIR=str(tmp_path),
        CHATBOT_MODEL_DIR=str(tiny_model_dir),
    )
    log = tmp_path / "chatbot.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from bot.cli import main; sys.exit(main())",
            command,
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        [report] = await fake.wait_for_message(ADMIN_ID, timeout=120)
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert code == 0, log.read_text()[-3000:]
    assert report["text"] == (
        "Scheduled retraining skipped: only 0 new training pairs since the last run, "
        "need 50 (force a run to train on them anyway)."
    )
    db = Database(settings.resolved_database_url)
    try:
        run = db.read(training_runs.get_run, orphan.id)
        assert run.status == "failed" and "died" in (run.error or "")
        [after] = RetrainScheduler(settings, db).list()
        assert after.next_run is not None and after.next_run > datetime.now(UTC)
    finally:
        db.dispose()
