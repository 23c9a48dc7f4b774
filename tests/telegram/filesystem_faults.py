"""Real faults under a SQLite database: a directory that turns read-only, a disk that fills up.

As root (where mounting is allowed) these are real filesystems: a read-only bind mount of the
database's directory, a small tmpfs filled to the last byte. Otherwise: file modes (which do not
stop root) for read-only, and SQLite's `max_page_count` for a full database. Either way only
connections opened after the fault begins feel it (an open file keeps the access it was opened
with), so the tests close the app's pooled connections when a fault begins, as a pool recycling
them would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event

from storage.database import Database


def mount_unavailable() -> str | None:
    """Why this process cannot mount filesystems (None: it can)."""
    if os.geteuid() != 0:
        return "mounting needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount commands"
    return None


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=30)


def _unmount(path: Path) -> None:
    try:
        _run("umount", str(path))
    except subprocess.CalledProcessError:  # still busy (a connection open): detach it lazily
        _run("umount", "-l", str(path))


@contextlib.contextmanager
def small_disk(path: Path, size_kib: int) -> Iterator[Path]:
    """A tmpfs of `size_kib` KiB mounted at `path` (created), unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


@contextlib.contextmanager
def disk_filled(directory: Path) -> Iterator[None]:
    """Fill the filesystem of `directory` to the last byte; free it again afterwards."""
    filler = directory / "filler"
    out = filler.open("wb", buffering=0)  # unbuffered: nothing left to flush into a full disk
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12):  # down to the last page
            with contextlib.suppress(OSError):  # ENOSPC: full at this size
                while True:
                    out.write(b"\0" * chunk)
    finally:
        out.close()
    try:
        yield
    finally:
        filler.unlink()


@contextlib.contextmanager
def database_capped(db: Database) -> Iterator[None]:
    """No full disk to be had: every new connection of `db` may not grow the file
    (`PRAGMA max_page_count` at its current size); SQLite then answers SQLITE_FULL as on a full
    disk."""

    def cap(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {int(pages)}")
        finally:
            cursor.close()

    event.listen(db.engine, "connect", cap)
    db.engine.dispose()
    try:
        yield
    finally:
        event.remove(db.engine, "connect", cap)
        db.engine.dispose()


@contextlib.contextmanager
def read_only_directory(directory: Path) -> Iterator[None]:
    """`directory` (holding the database, its WAL and shared-memory files) turns read-only until
    the block ends: a read-only bind mount over it as root, file modes otherwise."""
    if mount_unavailable() is None:
        # A read-only view made aside (nothing writes there, so making it read-only cannot be
        # refused as busy), then put over the directory in one step.
        view = directory.with_name(directory.name + "-read-only")
        view.mkdir()
        _run("mount", "--bind", "-o", "ro", str(directory), str(view))
        try:
            _run("mount", "--bind", str(view), str(directory))
            try:
                yield
            finally:
                _unmount(directory)
        finally:
            _unmount(view)
            view.rmdir()
        return
    files = [p for p in directory.iterdir() if p.is_file()]
    modes = {p: p.stat().st_mode for p in [directory, *files]}
    for file in files:
        file.chmod(stat.S_IMODE(modes[file]) & ~0o222)
    directory.chmod(stat.S_IMODE(modes[directory]) & ~0o222)
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(stat.S_IMODE(mode))
