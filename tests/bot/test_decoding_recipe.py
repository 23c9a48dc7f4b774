"""A checkpoint's own decoding (decoding.json) applies unless the operator set decoding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.model_slot import ModelSlot
from config import DecodingSettings, Settings
from nlp.checkpoint import load_checkpoint, save_checkpoint
from nlp.decoding_recipe import DECODING, choose_decoding, recommended_decoding
from nlp.errors import CheckpointError
from storage import model_versions
from storage.database import Database


@pytest.fixture
def shipped(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with a reverse model beside it and a decoding.json naming both."""
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "default"))
    # A stand-in reverse model: the tiny model's weights under a reverse recipe (MMI refuses a
    # model whose recipe says forward).
    checkpoint = load_checkpoint(tiny_model_dir)
    checkpoint.recipe = checkpoint.recipe.model_copy(update={"direction": "reverse"})
    save_checkpoint(tmp_path / "default-reverse", checkpoint)
    (model / DECODING).write_text(
        json.dumps({"strategy": "beam", "beam_size": 3, "mmi_reverse_dir": "../default-reverse"})
    )
    return model


def test_the_recommendation_applies_when_nothing_was_configured(shipped: Path) -> None:
    chosen = choose_decoding(DecodingSettings(), shipped)
    assert (chosen.strategy, chosen.beam_size) == ("beam", 3)
    assert chosen.mmi_reverse_dir == (shipped.parent / "default-reverse").resolve()


def test_any_setting_the_operator_made_wins_whole(shipped: Path) -> None:
    configured = DecodingSettings(temperature=0.5)
    assert choose_decoding(configured, shipped) is configured
    from_env = Settings(_env_file=None, decoding={"strategy": "sample"})
    assert choose_decoding(from_env.decoding, shipped).strategy == "sample"
    assert choose_decoding(Settings(_env_file=None).decoding, shipped).strategy == "beam"


def test_a_checkpoint_without_one_keeps_the_settings(tiny_model_dir: Path) -> None:
    assert recommended_decoding(tiny_model_dir) is None
    assert choose_decoding(DecodingSettings(), tiny_model_dir) == DecodingSettings()


@pytest.mark.parametrize("content", ["{", "[1]", '{"strategy": "telepathy"}'])
def test_a_broken_decoding_file_is_refused_with_its_path(shipped: Path, content: str) -> None:
    (shipped / DECODING).write_text(content)
    with pytest.raises(CheckpointError, match=r"decoding\.json"):
        recommended_decoding(shipped)


def test_a_retrained_version_decodes_like_the_model_it_came_from(
    shipped: Path, db: Database, tmp_path: Path
) -> None:
    slot = ModelSlot(shipped, DecodingSettings(), db, check_every_s=0.0)
    assert slot.current().responder.decoding.strategy == "beam"
    v2 = shutil.copytree(shipped, tmp_path / "v2", ignore=shutil.ignore_patterns(DECODING))
    with db.begin() as s:
        model_versions.register_version(s, "v2", str(v2))
        model_versions.activate_version(s, "v2")
    assert slot.refresh_if_due().version == "v2"
    decoding = slot.current().responder.decoding
    assert (decoding.strategy, decoding.beam_size) == ("beam", 3)
    assert slot.current().responder.reply(["hello"]) == ["Hi there!"]
