"""The blocklist: whole words and phrases, compared as the model reads text."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.retraining.blocklist import Blocklist
from bot.retraining.errors import RetrainError
from config import RetrainSettings
from nlp.text import TextProcessor

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
