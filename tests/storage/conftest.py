"""A migrated database per test, on SQLite and PostgreSQL, set up the way the app does it.

Running the Alembic upgrade for every test would dominate the suite's time, so each backend is
migrated once per session into a template (a SQLite file, a PostgreSQL template database) and
every test gets a fresh copy of it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from storage import schema
from storage.database import Database


def _migrate(url: URL | str) -> None:
    db = Database(url)
    try:
        schema.upgrade(db)
    finally:
        db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "chatbot.db"
    _migrate(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_template(postgres_server) -> Iterator[str]:
    url = postgres_server.create_database()
    try:
        _migrate(url)
        yield url.database
        postgres_server.forget_template(url.database)
    finally:
        postgres_server.drop_database(url)


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
    url = server.copy_of(request.getfixturevalue("postgres_template"))
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()
        server.drop_later(url)
