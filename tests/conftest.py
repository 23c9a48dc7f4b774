"""Fixtures shared across test packages: a fresh, empty database on SQLite and on PostgreSQL.

`backend` parametrises a test over both; PostgreSQL tests skip (with the reason) only when no
server answers at `CHATBOT_TEST_POSTGRES_URL` (default: the local server, database `test`).
Each test gets its own database (a file in `tmp_path`, or a uniquely named PostgreSQL database
dropped afterwards).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import OperationalError

from storage.database import normalize_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgres")


@dataclass
class PostgresServer:
    """Creates and drops throwaway databases through an AUTOCOMMIT admin connection.

    Creating a database takes a few hundred milliseconds, so copies of a template are made one
    test ahead and dropped after the test, both in a background thread while tests run.
    """

    admin: Engine
    _background: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-test")
    )
    _prepared: dict[str, deque[Future[URL]]] = field(default_factory=dict)

    def _quote(self, name: str) -> str:
        return self.admin.dialect.identifier_preparer.quote_identifier(name)

    def create_database(self, *, template: str | None = None) -> URL:
        name = f"test_{uuid4().hex}"
        statement = f"CREATE DATABASE {self._quote(name)}"
        if template is not None:
            statement += f" TEMPLATE {self._quote(template)}"
        with self.admin.connect() as connection:
            connection.exec_driver_sql(statement)
        return self.admin.url.set(database=name)

    def copy_of(self, template: str) -> URL:
        """A fresh database cloned from `template` (prepared while the previous test ran)."""
        prepared = self._prepared.setdefault(template, deque())
        if not prepared:
            prepared.append(self._background.submit(self.create_database, template=template))
        url = prepared.popleft().result()
        prepared.append(self._background.submit(self.create_database, template=template))
        return url

    def drop_later(self, url: URL) -> None:
        self._background.submit(self.drop_database, url)

    def forget_template(self, template: str) -> None:
        """Drop the copies prepared in advance, so `template` itself can be dropped."""
        for future in self._prepared.pop(template, deque()):
            self.drop_database(future.result())

    def close(self) -> None:
        for template in list(self._prepared):
            self.forget_template(template)
        self._background.shutdown(wait=True)
        self.admin.dispose()

    def drop_database(self, url: URL) -> None:
        assert url.database and url.database.startswith("test_"), url
        with self.admin.connect() as connection:
            connection.exec_driver_sql(
                f"DROP DATABASE IF EXISTS {self._quote(url.database)} WITH (FORCE)"
            )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    url = normalize_url(os.environ.get("CHATBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except OperationalError as exc:
        admin.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        pytest.skip(f"PostgreSQL not reachable at {url.render_as_string()}: {reason}")
    server = PostgresServer(admin)
    yield server
    server.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_database_url(
    backend: str, tmp_path: os.PathLike[str], request: pytest.FixtureRequest
) -> Iterator[URL]:
    """A database with no tables at all, on `backend`."""
    if backend == "sqlite":
        yield normalize_url(f"sqlite:///{tmp_path}/chatbot.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)
