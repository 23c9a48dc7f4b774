"""Which database errors mean "not now" rather than "never": an outage to wait out.

A server that is down or restarting, a dropped connection, a pool with no connection to give, a
SQLite file locked past the busy timeout, read-only or on a full disk: the same statement can
succeed later, so the caller keeps what it holds and tries again. Everything else (a constraint,
a syntax error, a missing table, a type the driver refuses) is a bug or bad data, and retrying
would fail the same way forever. Both drivers say which it is: SQLite by its result code
(`sqlite_errorname`), PostgreSQL by its SQLSTATE.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from storage.errors import DatabaseUnavailableError

# SQLite result codes (extended ones start with these): locked past the busy timeout, a file
# that is read-only or cannot be opened, a full disk, an I/O error.
_SQLITE_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_CANTOPEN",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_PROTOCOL",
    "SQLITE_NOMEM",
)
# A SQLite connection that opened its file when it could not be written (a read-only file or
# directory) stays read-only after the file can be written again; one that could not open it
# stays broken. Such connections are thrown away (see `reconnect_after_faults`).
_SQLITE_STUCK = ("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_IOERR")
# PostgreSQL SQLSTATE classes and codes about the server, not the statement: 08 connection
# exception, 53 insufficient resources (disk full, out of memory, too many connections), 57
# operator intervention (shutdown, crash, cannot connect now, a cancelled statement), 58 system
# error (I/O), 55P03 lock not available, 25006 read-only transaction (a standby, or
# default_transaction_read_only), 40001 / 40P01 serialization failure and deadlock.
_POSTGRES_TRANSIENT = ("08", "53", "57", "58", "55P03", "25006", "40001", "40P01")


def is_transient(error: BaseException) -> bool:
    """Is `error` a database that does not answer (or cannot write) now, worth waiting out?"""
    if isinstance(error, DatabaseUnavailableError | PoolTimeoutError):
        return True
    if not isinstance(error, DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    sqlite_code = getattr(error.orig, "sqlite_errorname", None)
    if isinstance(sqlite_code, str):
        return sqlite_code.startswith(_SQLITE_TRANSIENT)
    sqlstate = getattr(error.orig, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(_POSTGRES_TRANSIENT)
    # No code at all: psycopg could not connect (refused, timed out, name not resolved).
    return isinstance(error, OperationalError | InterfaceError)


def describe(error: BaseException) -> str:
    """One short line saying what the database answered (the driver's first line, no SQL)."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        text = str(error.orig)
    else:
        text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return " ".join(first.split())


def reconnect_after_faults(engine: Engine) -> None:
    """Let `engine` throw a SQLite connection away when its file was read-only, could not be
    opened or failed on I/O (SQLAlchemy then invalidates the pool and opens fresh connections),
    so the app recovers by itself once the file is writable again. PostgreSQL needs nothing:
    SQLAlchemy already recognises a dropped server connection."""
    if engine.dialect.name != "sqlite" or event.contains(engine, "handle_error", _sqlite_stuck):
        return
    event.listen(engine, "handle_error", _sqlite_stuck)


def _sqlite_stuck(context: ExceptionContext) -> Any:
    code = getattr(context.original_exception, "sqlite_errorname", None)
    if isinstance(code, str) and code.startswith(_SQLITE_STUCK):
        context.is_disconnect = True
        # The failed statement must be finalized now: while it lives, closing the connection
        # leaves it open as a "zombie" holding the read-only files, and SQLite shares those
        # (the WAL index) with every new connection of the process to the same file.
        cursor = getattr(context.execution_context, "cursor", None)
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.close()
    return None
