"""The engine and sessions, built from the settings' database URL.

Why a synchronous `Session` (and not `AsyncSession`): Alembic, APScheduler 3's
`SQLAlchemyJobStore` and the CLI are all synchronous, so one sync engine serves every caller with
one set of pragmas, one pool and one way of writing queries. The bot's async handlers never call
it on the event loop: they use `await db.run(fn, ...)` / `await db.run_read(fn, ...)`, which run
`fn(session, ...)` in a worker thread (`asyncio.to_thread`), each call with its own session.
Query functions elsewhere in `storage` take a `Session` as their first argument and never commit;
the transaction is the caller's (`with db.begin() as session: ...`), so several of them compose
into one transaction.

SQLite: WAL (readers never wait for the writer), `synchronous=NORMAL` (safe with WAL: a power
cut may lose the last commits but never corrupts the file), foreign keys on, a busy timeout from
the settings. Python's sqlite3 only emits BEGIN before DML, so SELECTs would not be inside the
transaction; we take BEGIN over (SQLAlchemy's documented recipe) and make write transactions
`BEGIN IMMEDIATE`, which takes the write lock up front and waits for it with the busy timeout,
instead of failing with "database is locked" when a read transaction later needs to write.

PostgreSQL: psycopg 3 (`postgresql://` URLs are switched to `postgresql+psycopg://`), pool sizes
from `StorageSettings`, `pool_pre_ping` so a restarted server does not fail the first request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from sqlalchemy import Engine, Executable, create_engine, event
from sqlalchemy.engine import URL, Connection, CursorResult, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from config import Settings, StorageSettings
from storage.errors import DatabaseUnavailableError, InvalidDatabaseUrlError

P = ParamSpec("P")
T = TypeVar("T")

_WRITE_OPTION = "chatbot_write_transaction"


def normalize_url(url: str | URL) -> URL:
    """Pick the drivers we ship: psycopg 3 for PostgreSQL, the stdlib sqlite3 for SQLite."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        # Not echoed back: an unparsable URL may still hold a password.
        raise InvalidDatabaseUrlError(f"the database URL cannot be parsed: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_file(url: URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_storage_engine(url: str | URL, storage: StorageSettings | None = None) -> Engine:
    """An engine configured as this module's docstring describes."""
    storage = storage or StorageSettings()
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _create_sqlite_engine(parsed, storage)
    try:
        return create_engine(
            parsed,
            pool_size=storage.pool_size,
            max_overflow=storage.max_overflow,
            pool_timeout=storage.pool_timeout,
            pool_pre_ping=True,
            hide_parameters=True,
        )
    except (NoSuchModuleError, ImportError) as exc:
        raise InvalidDatabaseUrlError(
            f"unsupported database URL {parsed.render_as_string()}: {exc}"
        ) from exc


def _create_sqlite_engine(url: URL, storage: StorageSettings) -> Engine:
    path = _sqlite_file(url)
    connect_args = {"timeout": storage.sqlite_busy_timeout_ms / 1000, "check_same_thread": False}
    if path is None:
        # In-memory (tests, tools): one connection shared by every thread, or each thread would
        # see its own empty database.
        engine = create_engine(
            url, connect_args=connect_args, poolclass=StaticPool, hide_parameters=True
        )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUnavailableError(
                f"cannot create the directory of the SQLite database {path}: {exc.strerror}"
            ) from exc
        engine = create_engine(
            url,
            connect_args=connect_args,
            pool_size=storage.pool_size,
            max_overflow=storage.max_overflow,
            pool_timeout=storage.pool_timeout,
            hide_parameters=True,
        )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Disable the driver's own BEGIN handling; `_on_begin` emits BEGIN for every transaction.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            if path is not None:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # Deleted rows (a /forget) are overwritten, not left readable in the file's free space.
            cursor.execute("PRAGMA secure_delete=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")

    return engine


class Database:
    """Owns the engine and the session factories; one per process, shared by all threads."""

    def __init__(self, url: str | URL, storage: StorageSettings | None = None) -> None:
        self.engine = create_storage_engine(url, storage)
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._write_sessions = sessionmaker(write_engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(settings.resolved_database_url, settings.storage)

    @property
    def url(self) -> URL:
        return self.engine.url

    @property
    def dialect(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A write transaction: commits when the block ends, rolls back if it raises."""
        with self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read transaction (one consistent snapshot on SQLite); never commits."""
        with self._read_sessions() as session:
            yield session

    def transact(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call `fn(session, ...)` inside one write transaction."""
        with self.begin() as session:
            return fn(session, *args, **kwargs)

    def read(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Call `fn(session, ...)` in a read session."""
        with self.session() as session:
            return fn(session, *args, **kwargs)

    async def run(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`transact` in a worker thread, for async callers: the event loop never blocks."""

        def call() -> T:
            return self.transact(fn, *args, **kwargs)

        return await asyncio.to_thread(call)

    async def run_read(
        self, fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read` in a worker thread, for async callers."""

        def call() -> T:
            return self.read(fn, *args, **kwargs)

        return await asyncio.to_thread(call)

    def dispose(self) -> None:
        """Close pooled connections (tests, shutdown, and before dropping a database)."""
        self.engine.dispose()


def execute_dml(session: Session, statement: Executable) -> int:
    """Run an INSERT, UPDATE or DELETE in `session`; how many rows it matched.

    `Session.execute` is typed to return a plain `Result`; for DML it is a `CursorResult`, the
    one that has `rowcount` (the cast SQLAlchemy's typing documentation recommends).
    """
    return cast(CursorResult[Any], session.execute(statement)).rowcount
