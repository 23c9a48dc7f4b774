"""A lock that at most one process holds, and that a process's death releases: who leads.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) taken on a connection of its
own, outside the engine's pool (a pooled connection would go back to the pool, lock and all, and
serve other queries). The server releases the lock when that session ends: at once when the
process dies (the kernel closes its socket), and within about `keepalive_seconds` x 2 when its
host vanishes (server-side TCP keepalives, set on the session). The holder checks its session
every so often (`held`); client-side keepalives make that check fail, rather than hang, when
the server or the network is gone. The key is derived from the lock's name and the current
schema, so each app database (or test schema) has its own leader.

SQLite (one host): an exclusive `flock` on a file beside the database, which the kernel releases
when the process dies. An in-memory database lives in one process: a lock of that process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from pathlib import Path
from typing import IO, ClassVar, Protocol

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from storage.database import Database


class LeaderLock(Protocol):
    """Taken without waiting; lost only when the process dies or its database session ends."""

    description: str

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; raises when the database cannot be reached."""
        ...

    def held(self) -> bool:
        """Whether this process still holds the lock it took (False after a lost session)."""
        ...

    def release(self) -> None:
        """Give the lock up (nothing when not held)."""
        ...


def leader_lock(db: Database, name: str) -> LeaderLock:
    """The lock called `name` for `db`'s database."""
    url = db.url
    if db.dialect == "postgresql":
        return PostgresAdvisoryLock(url, name)
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return ProcessLock(name)
    return FileLock(Path(f"{database}.{name}.lock"))


def advisory_key(schema: str, name: str) -> int:
    """A signed 64-bit key (what `pg_try_advisory_lock(bigint)` takes), stable across processes
    and versions (not Python's salted `hash`)."""
    digest = hashlib.sha256(f"chatbot:{schema}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresAdvisoryLock:
    def __init__(
        self, url: URL, name: str, *, keepalive_seconds: int = 5, connect_timeout: int = 5
    ) -> None:
        self.url, self.name = url, name
        self.keepalive_seconds = keepalive_seconds
        self.connect_timeout = connect_timeout
        self.description = f"PostgreSQL advisory lock {name!r}"
        self._engine: Engine | None = None
        self._connection: Connection | None = None
        self._key: int | None = None
        self._held = False

    def _connect(self) -> Connection:
        if self._connection is not None:
            return self._connection
        k = self.keepalive_seconds
        self._engine = create_engine(
            self.url,
            poolclass=NullPool,  # a connection of its own, closed for good when released
            isolation_level="AUTOCOMMIT",  # the lock is the session's, not a transaction's
            connect_args={
                "connect_timeout": self.connect_timeout,
                # libpq: notice a dead server or network instead of waiting on it for hours
                "keepalives": 1,
                "keepalives_idle": k,
                "keepalives_interval": k,
                "keepalives_count": 2,
                "tcp_user_timeout": 3 * k * 1000,
            },
        )
        connection = self._engine.connect()
        try:
            # The server's side of the same: a holder whose host vanished loses the lock.
            for setting in ("tcp_keepalives_idle", "tcp_keepalives_interval"):
                connection.execute(text(f"SET {setting} = {k:d}"))
            connection.execute(text("SET tcp_keepalives_count = 2"))
            schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        except BaseException:
            connection.close()
            self._engine.dispose()
            raise
        self._key = advisory_key(str(schema), self.name)
        self._connection = connection
        return connection

    def try_acquire(self) -> bool:
        if self._held:
            return True
        try:
            connection = self._connect()
            got = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar_one()
        except BaseException:
            self._close()
            raise
        self._held = bool(got)
        return self._held

    def held(self) -> bool:
        if not self._held or self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1")).scalar_one()
        except Exception:  # the session is gone, and the server released the lock with it
            self._close()
            return False
        return True

    def release(self) -> None:
        self._close()  # ending the session releases the lock

    def _close(self) -> None:
        self._held = False
        connection, engine = self._connection, self._engine
        self._connection = self._engine = None
        if connection is not None:
            with contextlib.suppress(Exception):  # a connection that is already broken
                connection.close()
        if engine is not None:
            engine.dispose()


class FileLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = f"lock file {path}"
        self._file: IO[bytes] | None = None

    def try_acquire(self) -> bool:
        if self._file is not None:
            return True
        handle = self.path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        except BaseException:
            handle.close()
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n".encode())  # who leads, for a person looking
        handle.flush()
        self._file = handle
        return True

    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()  # closing the file releases the flock


class ProcessLock:
    """For a database that only this process can see (in-memory SQLite)."""

    _taken: ClassVar[set[str]] = set()
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str) -> None:
        self.name = name
        self.description = f"in-process lock {name!r}"
        self._held = False

    def try_acquire(self) -> bool:
        with self._guard:
            if not self._held and self.name not in self._taken:
                self._taken.add(self.name)
                self._held = True
            return self._held

    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        with self._guard:
            if self._held:
                self._taken.discard(self.name)
                self._held = False
