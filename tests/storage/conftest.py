"""A migrated database per test, on SQLite and PostgreSQL, set up the way the app does it.

Running the Alembic upgrade for every test would dominate the suite's time on SQLite, so it is
migrated once per session into a template file that each test copies. On PostgreSQL each test
gets a fresh schema migrated in the background while the previous test runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from storage import schema_revision
from storage.database import Database


def migrate(url: URL | str) -> None:
    db = Database(url)
    try:
        schema_revision.upgrade(db)
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "chatbot.db"
    migrate(f"sqlite:///{path}")
    return path


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    """An empty database at the newest schema revision, on `backend`; disposed afterwards."""
    if backend == "sqlite":
        path = tmp_path / "chatbot.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        db = Database(f"sqlite:///{path}")
        yield db
        db.dispose()
        return
    server = request.getfixturevalue("postgres_server")
    url = server.prepared(migrate)
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()
        server.drop_later(url)
