"""A migrated SQLite database, a private copy of the tiny model as the shipped model, and fast
retraining settings, per test."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import Settings
from storage.database import Database
from tests.support.retraining import retrain_settings


@pytest.fixture
def db(tmp_path: Path, sqlite_template: Path) -> Iterator[Database]:
    path = tmp_path / "chatbot.db"
    shutil.copyfile(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


@pytest.fixture
def model_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The shipped model (version zero), a copy: tests compare its bytes before and after."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "shipped" / "default"))


@pytest.fixture
def settings(tmp_path: Path, model_dir: Path, db: Database, tiny_pairs_file: Path) -> Settings:
    return retrain_settings(tmp_path, model_dir, db, tiny_pairs_file)
