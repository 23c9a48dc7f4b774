"""`chatbot export`: a file an operator can hand over, and every bad input refused in one line with
exit 2 before the database is even opened."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.export_formats import FIELDS
from storage import privacy
from storage.conversations import ChatRef, UserRef, find_user, save_exchange
from storage.database import Database

ROOT = os.geteuid() == 0


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_template: Path) -> Iterator[Path]:
    """A directory of our own with a migrated SQLite database holding Ann's and Bob's chats; no
    CHATBOT_* variables and no developer's .env."""
    for key in list(os.environ):
        if key.startswith("CHATBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    shutil.copyfile(sqlite_template, tmp_path / "chatbot.db")
    db = Database(f"sqlite:///{tmp_path / 'chatbot.db'}")
    try:
        with db.begin() as session:
            ann, bob = UserRef("telegram", 101, "Ann"), UserRef("telegram", 102, "Bob")
            save_exchange(
                session, ChatRef("telegram", 101), ann, "hi, bot", "hi", model_version="v1"
            )
            save_exchange(session, ChatRef("telegram", 102), bob, "bob here", "hey")
    finally:
        db.dispose()
    yield tmp_path
    for path in tmp_path.iterdir():  # what a case made read-only, pytest must still remove
        path.chmod(0o755)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _read_only(place: Path) -> Path:
    path = place / "locked"
    path.mkdir()
    path.chmod(0o555)
    return path / "out.jsonl"


# What a case gives: the arguments, and a phrase the one line must hold.
Case = Callable[[Path], tuple[list[str], str]]

CASES: list[object] = [
    pytest.param(
        lambda p: (["export", "--out", "x.jsonl"], "--user ID, --chat ID or --since"),
        id="no-selector",
    ),
    pytest.param(
        lambda p: (["export", "--user", "1", "--chat", "2", "--out", "x.jsonl"], "not allowed"),
        id="user-and-chat",
    ),
    pytest.param(
        lambda p: (["export", "--since", "last tuesday", "--out", "x.jsonl"], "2026-11-01"),
        id="since-not-a-date",
    ),
    pytest.param(
        lambda p: (["export", "--since", "2026-02-30", "--out", "x.jsonl"], "--since"),
        id="since-impossible-date",
    ),
    pytest.param(
        lambda p: (
            ["export", "--user", "1", "--format", "xml", "--out", "x.xml"],
            "invalid choice",
        ),
        id="unknown-format",
    ),
    pytest.param(
        lambda p: (["export", "--user", "1", "--platform", "irc", "--out", "x"], "invalid choice"),
        id="unknown-platform",
    ),
    pytest.param(
        lambda p: (["export", "--user", "1"], "--out"),
        id="no-out",
    ),
    pytest.param(
        lambda p: (["export", "--user", "1", "--out", "no/such/dir/x.jsonl"], "does not exist"),
        id="out-missing-directory",
    ),
    pytest.param(
        lambda p: (["export", "--user", "1", "--out", str(p)], "is a directory"),
        id="out-is-a-directory",
    ),
    pytest.param(
        lambda p: (
            ["export", "--user", "1", "--out", "/proc/chatbot-export.jsonl"],
            "cannot write",
        ),
        id="out-unwritable",
    ),
    pytest.param(
        lambda p: (["export", "--user", "1", "--out", str(_read_only(p))], "cannot write"),
        id="out-read-only-directory",
        marks=pytest.mark.skipif(ROOT, reason="root writes to read-only directories"),
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_2_before_any_work(
    case: Case, place: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv, expected = case(place)
    # Not a database: had the command opened it before checking its arguments, the error
    # would be about the database instead.
    not_a_database = place / "not-a-database.db"
    not_a_database.write_text("this is a text file, not a database\n" * 50)
    monkeypatch.setenv("CHATBOT_DATABASE_URL", f"sqlite:///{not_a_database}")

    code, _out, err = _run(argv, capsys)

    assert "Traceback" not in err, err
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("chatbot"), err
    assert expected in err, err
    assert "database" not in err, err
    assert not (place / "x.jsonl").exists()


def test_export_writes_a_users_messages_as_jsonl_and_csv(
    place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(["export", "--user", "101", "--out", "ann.jsonl"], capsys)
    assert (code, err) == (0, "")
    assert out == "wrote 2 messages to ann.jsonl\n"
    records = [json.loads(line) for line in (place / "ann.jsonl").read_text("utf-8").splitlines()]
    assert [(r["role"], r["text"], r["model_version"]) for r in records] == [
        ("user", "hi, bot", None),
        ("bot", "hi", "v1"),
    ]

    code, out, err = _run(
        ["export", "--user", "101", "--format", "csv", "--out", str(place / "ann.csv")], capsys
    )
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO((place / "ann.csv").read_text("utf-8"), newline="")))
    assert [r["text"] for r in rows] == ["hi, bot", "hi"]
    assert list(rows[0]) == list(FIELDS)


def test_since_alone_exports_every_chat(place: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["export", "--since", "2000-01-01", "--out", "all.jsonl"], capsys)
    assert code == 0 and out == "wrote 4 messages to all.jsonl\n"
    code, out, _ = _run(
        ["export", "--since", "2999-01-01T00:00+02:00", "--out", "none.jsonl"], capsys
    )
    assert code == 0 and out == "wrote 0 messages to none.jsonl\n"


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_forgotten_user_exports_an_empty_file_and_says_so(
    place: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    db = Database(f"sqlite:///{place / 'chatbot.db'}")
    try:
        with db.begin() as session:
            ann = find_user(session, "telegram", 101)
            assert ann is not None
            privacy.forget_user(session, ann)
    finally:
        db.dispose()
    out_file = place / f"ann.{fmt}"

    code, out, err = _run(
        ["export", "--user", "101", "--format", fmt, "--out", str(out_file)], capsys
    )

    assert code == 0 and out == ""
    assert err.count("\n") == 1 and "nothing stored for telegram user 101" in err, err
    assert out_file.read_bytes() == (
        b"" if fmt == "jsonl" else (",".join(FIELDS) + "\r\n").encode()
    )


def test_help_documents_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    shown = capsys.readouterr().out
    for name in FIELDS:
        assert f"  {name} " in shown
