"""Two hosts, one database, no shared disk: a version that a retraining promoted on host A (its own
data directory, since removed) is served by a replica on host B, fetched into B's cache and
verified by SHA-256, and B's scheduler would fine-tune the next version from that copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.model_files import cache_key, model_cache_dir
from bot.model_slot import ModelSlot
from bot.retraining import job, versions
from nlp.responder import Responder
from storage import model_files, model_versions
from storage.database import Database
from tests.support.retraining import PATTERN, retrain_settings, seed_pattern, tree_digest

ASKED = [*PATTERN, "hello", "how are you?"]


@pytest.mark.slow  # a real fine-tune
@pytest.mark.parametrize("backend", ["postgres"])  # what hosts share; SQLite is tests/bot's
def test_a_version_promoted_on_one_host_is_served_by_a_replica_on_another(
    database: Database, tiny_model_dir: Path, tiny_pairs_file: Path, tmp_path: Path
) -> None:
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    shipped_a = Path(shutil.copytree(tiny_model_dir, host_a / "shipped" / "default"))
    shipped_b = Path(shutil.copytree(tiny_model_dir, host_b / "shipped" / "default"))
    settings_a = retrain_settings(host_a, shipped_a, database, tiny_pairs_file)
    settings_b = retrain_settings(host_b, shipped_b, database, tiny_pairs_file)
    seed_pattern(database)

    outcome = job.run_retrain(settings_a, database, trigger="test")

    assert outcome.status == "promoted", outcome.metrics
    active = database.read(model_versions.get_active_version)
    assert active is not None and active.name == outcome.candidate_version
    written_on_a = tree_digest(Path(active.checkpoint_path))
    said_on_a = Responder(Path(active.checkpoint_path)).reply(ASKED)
    shutil.rmtree(host_a)  # host A and everything on its disk are gone

    replica = ModelSlot(
        shipped_b, settings_b.decoding, database, cache_dir=model_cache_dir(settings_b)
    )

    assert replica.current().version == active.name
    assert replica.current().responder.reply(ASKED) == said_on_a  # the same model
    stored = database.read(model_files.list_files, active.id)
    [fetched] = model_cache_dir(settings_b).iterdir()
    assert fetched.name == cache_key(stored)
    assert tree_digest(fetched) == written_on_a == {f.name: f.sha256 for f in stored}
    # Host B's scheduler fine-tunes the next version from its own verified copy.
    assert Path(versions.ensure_active_version(settings_b, database).checkpoint_path) == fetched
