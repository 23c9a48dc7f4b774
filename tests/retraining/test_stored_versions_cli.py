"""`chatbot model activate` on a host that did not train the version: its files come from the
database, verified; a corrupt one is one line and exit 2, and the active version stays."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from bot.cli import main
from bot.model_files import model_cache_dir, read_checkpoint_files
from config import Settings
from storage import model_versions
from storage.database import Database
from storage.tables import ModelFile
from tests.support.retraining import cli_env


@pytest.fixture(autouse=True)
def environment(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in cli_env(settings).items():
        monkeypatch.setenv(name, value)


def test_a_version_stored_by_another_host_is_activated_from_the_database(
    capsys: pytest.CaptureFixture[str], settings: Settings, db: Database, model_dir: Path
) -> None:
    with db.begin() as s:
        for name in ("r1", "r2"):  # trained elsewhere: the paths exist on another host only
            files = read_checkpoint_files(model_dir) | {"metrics.json": f'{{"{name}": 1}}'.encode()}
            model_versions.register_version(s, name, f"/srv/host-a/models/{name}", files=files)
        model_versions.activate_version(s, "r1")
        r2 = model_versions.get_version(s, "r2")
        s.execute(  # r2's stored vocabulary damaged after it was registered
            update(ModelFile)
            .where(ModelFile.model_version_id == r2.id, ModelFile.name == "vocab.json")
            .values(content=b"[]")
        )

    assert main(["model", "activate", "r1"]) == 0
    assert capsys.readouterr().out == "active model version: r1\n"
    assert len(list(model_cache_dir(settings).iterdir())) == 1

    assert main(["model", "activate", "r2"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("chatbot model: error: model version r2: vocab.json does not match")
    assert db.read(model_versions.get_active_version).name == "r1"  # type: ignore[union-attr]
