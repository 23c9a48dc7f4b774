import shutil
from pathlib import Path

from bot.model_slot import ModelSlot
from config import DecodingSettings
from storage import model_versions
from storage.database import Database


def test_without_a_registered_version_the_default_directory_answers(
    tiny_model_dir: Path, db: Database
) -> None:
    slot = ModelSlot(tiny_model_dir, DecodingSettings(), db)
    assert slot.current().version == tiny_model_dir.name
    assert slot.refresh() is False


def test_a_newly_activated_version_is_picked_up_without_a_restart(
    tiny_model_dir: Path, db: Database, tmp_path: Path
) -> None:
    slot = ModelSlot(tiny_model_dir, DecodingSettings(), db, check_every_s=0.0)
    v2 = shutil.copytree(tiny_model_dir, tmp_path / "v2")
    with db.begin() as s:
        model_versions.register_version(s, "v2", str(v2))
        model_versions.activate_version(s, "v2")
    assert slot.refresh_if_due().version == "v2"
    assert slot.current().responder.reply(["hello"]) == ["Hi there!"]


def test_a_broken_new_version_keeps_the_current_one_answering(
    tiny_model_dir: Path, db: Database, tmp_path: Path
) -> None:
    slot = ModelSlot(tiny_model_dir, DecodingSettings(), db)
    with db.begin() as s:
        model_versions.register_version(s, "broken", str(tmp_path / "missing"))
        model_versions.activate_version(s, "broken")
    assert slot.refresh() is False
    assert slot.current().version == tiny_model_dir.name
