"""The engine: pragmas, URL handling, transactions, and async callers kept off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from config import Settings, StorageSettings
from storage import schema_revision
from storage.database import Database, normalize_url
from storage.errors import DatabaseUnavailableError, InvalidDatabaseUrlError
from storage.tables import Chat


def test_postgresql_urls_use_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_default_url_is_a_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "missing" / "data", database_url=None)
    db = Database.from_settings(settings)
    try:
        with db.session() as session:
            session.execute(select(1))
        assert db.dialect == "sqlite"
        assert (tmp_path / "missing" / "data" / "chatbot.db").exists()
    finally:
        db.dispose()


def test_sqlite_connections_have_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/a.db", StorageSettings(sqlite_busy_timeout_ms=1234))
    try:
        with db.engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 1234
    finally:
        db.dispose()


def test_postgresql_pool_follows_the_settings(postgres_server) -> None:
    url = postgres_server.admin.url
    db = Database(url, StorageSettings(pool_size=3, max_overflow=4, pool_timeout=5.0))
    try:
        pool = db.engine.pool
        assert isinstance(pool, QueuePool)
        assert pool.size() == 3
        assert pool._max_overflow == 4
        assert pool._timeout == 5.0
        assert pool._pre_ping
        with db.session() as session:
            assert session.execute(select(1)).scalar() == 1
    finally:
        db.dispose()


def _count_chats(session: Session) -> int:
    return session.execute(select(func.count()).select_from(Chat)).scalar_one()


def _add_chat(session: Session, external_id: str) -> None:
    session.execute(
        insert(Chat).values(platform="console", external_id=external_id, kind="private")
    )


def test_begin_commits_on_success_and_rolls_back_on_error(database: Database) -> None:
    with database.begin() as session:
        _add_chat(session, "kept")
    with pytest.raises(RuntimeError), database.begin() as session:
        _add_chat(session, "dropped")
        raise RuntimeError("boom")
    with database.session() as session:
        assert _count_chats(session) == 1


def test_timestamps_come_back_aware_in_utc(database: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    written = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=plus_two)
    with database.begin() as session:
        session.execute(
            insert(Chat).values(
                platform="console", external_id="t", kind="private", created_at=written
            )
        )
    with database.session() as session:
        read = session.execute(select(Chat.created_at)).scalar_one()
    assert read.tzinfo is not None and read.utcoffset() == timedelta(0)
    assert read == written
    assert read == datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def test_naive_timestamps_are_refused(database: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), database.begin() as session:
        session.execute(
            insert(Chat).values(
                platform="console", external_id="n", kind="private", created_at=datetime(2024, 1, 1)
            )
        )


async def test_async_callers_run_in_a_worker_thread_and_the_loop_keeps_going(
    database: Database,
) -> None:
    loop_thread = threading.get_ident()
    ticks = 0

    async def ticker() -> None:  # counts how often the loop gets to run while the query runs
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)  # the behaviour under test: the loop keeps ticking
            ticks += 1

    def slow_write(session: Session) -> int:
        _add_chat(session, "async")
        time.sleep(0.2)  # stands in for a slow query (the behaviour under test): no stalled loop
        return threading.get_ident()

    task = asyncio.create_task(ticker())
    try:
        worker_thread = await database.run(slow_write)
        count = await database.run_read(_count_chats)
    finally:
        task.cancel()
    assert worker_thread != loop_thread
    assert count == 1
    assert ticks >= 10


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "cannot be parsed"),
        ("mysql://user:secret@host/db", r"unsupported database URL mysql://user:\*\*\*@host/db"),
    ],
)
def test_unusable_urls_are_one_clear_error_without_the_password(url: str, message: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=message) as error:
        Database(url)
    assert "secret" not in str(error.value)


def test_an_unreachable_server_is_one_clear_error() -> None:
    db = Database("postgresql://someone:secret@127.0.0.1:1/none")
    try:
        with pytest.raises(DatabaseUnavailableError, match=r"cannot connect to .*:1/none") as error:
            schema_revision.ensure_schema(db)
        assert "secret" not in str(error.value)
    finally:
        db.dispose()


def test_a_sqlite_file_in_an_impossible_place_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(DatabaseUnavailableError, match="cannot create the directory"):
        Database(f"sqlite:///{blocker}/sub/chatbot.db")


async def test_an_in_memory_database_is_one_database_for_every_thread() -> None:
    db = Database("sqlite://")
    try:
        schema_revision.upgrade(db)
        schema_revision.ensure_schema(db)
        await db.run(_add_chat, "from a worker thread")
        assert await db.run_read(_count_chats) == 1
        with db.session() as session:
            assert _count_chats(session) == 1
    finally:
        db.dispose()


def test_a_database_error_does_not_carry_the_statements_values(database: Database) -> None:
    """Errors reach the logs with their traceback: the values (a user's message) stay out."""
    with pytest.raises(DBAPIError) as raised, database.begin() as session:
        session.execute(
            text("INSERT INTO no_such_table (body) VALUES (:body)"), {"body": "my secret words"}
        )
    assert "my secret words" not in str(raised.value)
    assert "hide_parameters" in str(raised.value)
