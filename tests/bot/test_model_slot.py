import json
import logging
import shutil
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from bot.model_files import read_checkpoint_files
from bot.model_slot import ModelSlot
from config import DecodingSettings
from nlp.checkpoint import load_checkpoint, save_checkpoint
from nlp.decoding_recipe import DECODING
from storage import model_files, model_versions
from storage.database import Database
from storage.tables import ModelFile


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


def _store_and_activate(db: Database, name: str, directory: Path) -> None:
    """A version as another host's retraining registers it: its files in the database, its
    directory a path that does not exist here."""
    with db.begin() as s:
        model_versions.register_version(
            s, name, f"/srv/host-a/models/{name}", files=read_checkpoint_files(directory)
        )
        model_versions.activate_version(s, name)


def test_a_version_stored_in_the_database_is_served_from_this_hosts_cache(
    tiny_model_dir: Path, db: Database, tmp_path: Path
) -> None:
    cache = tmp_path / "host-b" / "model-cache"
    slot = ModelSlot(tiny_model_dir, DecodingSettings(), db, check_every_s=0.0, cache_dir=cache)
    _store_and_activate(db, "r1", tiny_model_dir)

    assert slot.refresh_if_due().version == "r1"
    assert slot.current().responder.reply(["hello"]) == ["Hi there!"]
    [fetched] = cache.iterdir()
    assert sorted(p.name for p in fetched.iterdir()) == sorted(
        read_checkpoint_files(tiny_model_dir)
    )


def test_a_corrupt_stored_version_is_refused_in_one_log_line_and_the_old_one_answers(
    tiny_model_dir: Path, db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "model-cache"
    slot = ModelSlot(tiny_model_dir, DecodingSettings(), db, check_every_s=0.0, cache_dir=cache)
    _store_and_activate(db, "r1", tiny_model_dir)
    with db.begin() as s:  # one byte of the stored weights flipped, the digest left as it was
        version = model_versions.get_version(s, "r1")
        content = bytearray(model_files.read_content(s, version.id, "model.safetensors"))
        content[100] ^= 0x01
        s.execute(
            update(ModelFile)
            .where(ModelFile.model_version_id == version.id, ModelFile.name == "model.safetensors")
            .values(content=bytes(content))
        )

    with caplog.at_level(logging.INFO, logger="bot.model_slot"):
        assert slot.refresh() is False
        assert slot.refresh() is False  # refused once, not again at every check
    [refused] = [r for r in caplog.records if r.name == "bot.model_slot"]
    assert refused.levelno == logging.ERROR and refused.exc_info is None
    message = refused.getMessage()
    assert "\n" not in message
    assert "model version r1" in message and "model.safetensors does not match" in message
    assert f"still answering with {tiny_model_dir.name}" in message
    assert slot.current().version == tiny_model_dir.name
    assert slot.current().responder.reply(["hello"]) == ["Hi there!"]
    assert list(cache.iterdir()) == []  # nothing half-written or unverified kept


def test_a_stored_retrained_version_decodes_with_the_shipped_mmi_reverse_model(
    tiny_model_dir: Path, db: Database, tmp_path: Path
) -> None:
    """The shipped default's decoding.json names its MMI reverse model relative to itself
    (`../default-reverse`); a retrained version (no decoding.json of its own) fetched into the
    cache still finds it: the one shipped on this host."""
    shipped = Path(shutil.copytree(tiny_model_dir, tmp_path / "host-b" / "models" / "default"))
    reverse = load_checkpoint(tiny_model_dir)  # a stand-in: the tiny model, labelled reverse
    reverse.recipe = reverse.recipe.model_copy(update={"direction": "reverse"})
    save_checkpoint(shipped.parent / "default-reverse", reverse)
    (shipped / DECODING).write_text(
        json.dumps({"strategy": "beam", "beam_size": 3, "mmi_reverse_dir": "../default-reverse"})
    )
    slot = ModelSlot(
        shipped, DecodingSettings(), db, check_every_s=0.0, cache_dir=tmp_path / "cache"
    )
    _store_and_activate(db, "r1", tiny_model_dir)

    assert slot.refresh_if_due().version == "r1"
    decoding = slot.current().responder.decoding
    assert decoding.mmi_reverse_dir == (shipped.parent / "default-reverse").resolve()
    assert slot.current().responder.reply(["hello"]) == ["Hi there!"]


def test_an_unreachable_registry_keeps_the_current_model_answering(
    tiny_model_dir: Path,
    db: Database,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A registry check during a database outage is skipped with one line for the whole outage;
    the model in hand answers, and the check picks up a new version once the database is back."""
    slot = ModelSlot(tiny_model_dir, DecodingSettings(), db, check_every_s=0.0)
    reachable_read = db.read

    def database_down(*args: object, **kwargs: object) -> object:
        raise OperationalError("SELECT model_versions", {}, ConnectionError("server closed"))

    monkeypatch.setattr(db, "read", database_down)
    with caplog.at_level(logging.INFO, logger="bot.model_slot"):
        for _ in range(3):
            assert slot.refresh_if_due().version == tiny_model_dir.name
        assert slot.current().responder.reply(["hello"]) == ["Hi there!"]
        monkeypatch.setattr(db, "read", reachable_read)
        v2 = shutil.copytree(tiny_model_dir, tmp_path / "v2")
        with db.begin() as s:
            model_versions.register_version(s, "v2", str(v2))
            model_versions.activate_version(s, "v2")
        assert slot.refresh_if_due().version == "v2"
    messages = [r.getMessage() for r in caplog.records]
    assert sum("registry unreachable" in m for m in messages) == 1
    assert sum("reachable again" in m for m in messages) == 1
