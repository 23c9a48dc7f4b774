"""An outage to wait out, or a bug that would fail the same way forever: told apart by the
driver's own codes, on real databases."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from config import StorageSettings
from storage.database import Database
from storage.faults import describe, is_transient


def _error_of(db: Database, statement: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as raised, db.begin() as session:
        session.execute(text(statement))
    return raised.value


def test_sqlite_locked_past_the_busy_timeout_is_an_outage(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (x)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    db = Database(f"sqlite:///{path}", StorageSettings(sqlite_busy_timeout_ms=50))
    try:
        error = _error_of(db, "INSERT INTO t VALUES (1)")
    finally:
        db.dispose()
        holder.execute("ROLLBACK")
        holder.close()

    assert is_transient(error)
    assert describe(error) == "database is locked"


def test_sqlite_bugs_are_not_outages(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'bugs.db'}")
    try:
        missing = _error_of(db, "SELECT * FROM no_such_table")
        syntax = _error_of(db, "SELEKT 1")
    finally:
        db.dispose()

    assert not is_transient(missing) and not is_transient(syntax)
    assert describe(missing) == "no such table: no_such_table"


def test_a_postgres_server_that_does_not_answer_is_an_outage() -> None:
    nobody = Database("postgresql://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(DBAPIError) as refused, nobody.begin() as session:
            session.execute(text("SELECT 1"))
    finally:
        nobody.dispose()
    assert is_transient(refused.value)
    assert "\n" not in describe(refused.value)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.slow)])
def test_postgres_read_only_is_an_outage_and_a_missing_table_is_not(database: Database) -> None:
    read_only = _error_of(
        database, "SET TRANSACTION READ ONLY; CREATE TABLE written_anyway (x int)"
    )
    missing = _error_of(database, "SELECT * FROM no_such_table")

    assert is_transient(read_only)
    assert not is_transient(missing)
