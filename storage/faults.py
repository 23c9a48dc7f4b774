"""Which database errors mean "not now" rather than "never": an outage to wait out.

A server that is down or restarting, a dropped connection, a pool with no connection to give, a
SQLite file locked past the busy timeout, read-only or on a full disk: the same statement can
succeed later, so the caller keeps what it holds and tries again. Everything else (a constraint,
a syntax error, a type the driver refuses) is a bug or bad data, and retrying would fail the
same way forever.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from storage.errors import DatabaseUnavailableError

# PostgreSQL error classes that describe the server, not the statement (SQLSTATE prefixes):
# 08 connection exception, 53 insufficient resources (disk full, out of memory, too many
# connections), 57P admin shutdown / crash shutdown / cannot connect now, 25006 read-only
# transaction (a standby, or default_transaction_read_only), 40001/40P01 serialization failure
# and deadlock (the transaction may simply be retried).
_TRANSIENT_SQLSTATES = ("08", "53", "57P", "25006", "40001", "40P01")


def is_transient(error: BaseException) -> bool:
    """Is `error` a database that does not answer (or cannot write) now, worth waiting out?"""
    if isinstance(error, DatabaseUnavailableError | PoolTimeoutError):
        return True
    if isinstance(error, OperationalError | InterfaceError):
        return True  # SQLite: locked, read-only, disk full, I/O; psycopg: connection problems
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = getattr(error.orig, "sqlstate", None)
        return isinstance(sqlstate, str) and sqlstate.startswith(_TRANSIENT_SQLSTATES)
    return False


def describe(error: BaseException) -> str:
    """One short line saying what the database answered (the driver's first line, no SQL)."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        text = str(error.orig)
    else:
        text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return " ".join(first.split())
