"""The console's /export: the person at the console gets their history as a file in the data
directory, and the path printed."""

from __future__ import annotations

import csv
import getpass
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.conversation_export import delete_saved_histories, history_filename
from bot.export_formats import ExportFormat

CHATBOT = str(Path(sys.executable).parent / "chatbot")


@pytest.mark.slow  # a real `chatbot chat` process with a model
def test_console_export_saves_the_history_in_the_data_directory(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "data"
    env = {
        **os.environ,
        "CHATBOT_DATA_DIR": str(data),
        "CHATBOT_MODEL_DIR": str(tiny_model_dir),
        "CHATBOT_DB_AUTO_UPGRADE": "1",
    }
    result = subprocess.run(
        [CHATBOT, "chat"],
        input="/export\nhello, there\n/export\n/export CSV\n/export xml\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    nothing, _reply, saved_jsonl, saved_csv, usage = result.stdout.splitlines()

    assert nothing == "There is nothing stored about you, so there is nothing to export."
    assert usage == "Usage: /export (JSON Lines) or /export csv"
    jsonl = Path(saved_jsonl.removeprefix("Saved 2 messages to "))
    assert jsonl.parent == data / "exports" and jsonl.suffix == ".jsonl"
    records = [json.loads(line) for line in jsonl.read_text("utf-8").splitlines()]
    assert [(r["platform"], r["user_id"], r["role"]) for r in records] == [
        ("console", getpass.getuser(), "user"),
        ("console", None, "bot"),
    ]
    assert records[0]["text"] == "hello, there"
    as_csv = Path(saved_csv.removeprefix("Saved 2 messages to "))
    rows = list(csv.DictReader(io.StringIO(as_csv.read_text("utf-8"), newline="")))
    assert [r["text"] for r in rows] == [r["text"] for r in records]
    assert sorted(p.name for p in (data / "exports").iterdir()) == sorted([jsonl.name, as_csv.name])

    # /forget takes the saved files along: they hold the person's messages.
    forgot = subprocess.run(
        [CHATBOT, "chat"],
        input="/forget yes\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert forgot.returncode == 0, forgot.stderr
    assert list((data / "exports").iterdir()) == []


def test_only_the_persons_own_saved_histories_are_deleted(tmp_path: Path) -> None:
    at = datetime(2026, 11, 26, 17, 36, 29, tzinfo=UTC)
    names = [
        history_filename("console", "a", ExportFormat.JSONL, at),
        history_filename("console", "a", ExportFormat.CSV, at),
        history_filename("console", "a-2", ExportFormat.JSONL, at),
        history_filename("telegram", "a", ExportFormat.JSONL, at),
        "notes.txt",
    ]
    for name in names:
        (tmp_path / name).write_text("x")
    assert delete_saved_histories("console", "a", tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])
    assert delete_saved_histories("console", "a", tmp_path / "missing") == 0
