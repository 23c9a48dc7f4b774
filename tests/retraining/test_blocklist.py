"""The blocklist: whole words and phrases, compared as the model reads text."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.retraining.blocklist import Blocklist
from bot.retraining.errors import RetrainError
from bot.retraining.service import RetrainService
from config import RetrainSettings, Settings
from nlp.text import TextProcessor
from storage.database import Database
from tests.support.retraining import with_retrain

PROCESSOR = TextProcessor()


def _tokens(text: str) -> list[str]:
    return PROCESSOR.tokenize(text)


def test_entries_match_whole_tokens_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text("# a comment\n\nAss   # trailing comment\nkill yourself\n", encoding="utf-8")
    blocklist = Blocklist.load(path, PROCESSOR)

    assert len(blocklist) == 2
    assert blocklist.blocks(_tokens("What an ASS!"))
    assert not blocklist.blocks(_tokens("a class of assets"))
    assert blocklist.blocks(_tokens("Just kill yourself."))
    assert not blocklist.blocks(_tokens("kill the lights, then yourself"))


def test_the_shipped_list_is_the_default_and_blocks_profanity() -> None:
    shipped = RetrainSettings().blocklist_path
    blocklist = Blocklist.load(shipped, PROCESSOR)
    assert shipped.name == "blocklist.txt" and len(blocklist) > 20
    assert blocklist.blocks(_tokens("what the fuck"))
    assert not blocklist.blocks(_tokens("what a lovely day"))


def test_a_missing_blocklist_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RetrainError, match="cannot read the blocklist"):
        Blocklist.load(tmp_path / "missing.txt", PROCESSOR)


@pytest.mark.parametrize(("content", "reason"), [(b"\xff\xfe\x00", "not UTF-8 text"), (None, "")])
def test_a_blocklist_that_cannot_be_read_is_a_one_line_retrain_error(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    path = tmp_path / "blocklist.txt"
    if content is None:
        path.mkdir()  # a directory where the file should be
    else:
        path.write_bytes(content)
    with pytest.raises(RetrainError) as raised:
        Blocklist.load(path, PROCESSOR)
    assert str(raised.value).startswith(f"cannot read the blocklist {path}: {reason}")
    assert "\n" not in str(raised.value)


def test_a_scheduled_run_with_an_unreadable_blocklist_is_one_log_line_and_a_message(
    settings: Settings, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    unreadable = tmp_path / "blocklist.txt"
    unreadable.write_bytes(b"\xff\xfe\x00")
    told: list[str] = []
    service = RetrainService(
        with_retrain(settings, blocklist_path=unreadable), db, notify=told.append
    )
    with caplog.at_level(logging.INFO):
        text = service.run_scheduled()

    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [
        f"scheduled retraining could not start: cannot read the blocklist {unreadable}: "
        "not UTF-8 text"
    ]
    assert not [r for r in caplog.records if r.exc_info]  # no traceback
    assert told == [text] and "not UTF-8 text" in text
