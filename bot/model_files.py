"""Where a model version's checkpoint lies on this host, when the registry may be shared by
hosts that share no disk.

- A retrained version's files are stored in the database with its row (`read_checkpoint_files`
  reads them from the directory the retraining wrote). Every process, on any host, materialises
  them into its cache directory under a key that is the SHA-256 of the version's file list
  (names, digests, sizes): written into a temporary directory, every file's digest checked on
  disk against the registry's, then renamed into place in one step. A directory under its final
  name is therefore complete and verified; a mismatch raises `UnverifiedModelError` and leaves
  nothing behind, so a half-written or unverified model is never loaded.
- A cache hit is verified again, every file's SHA-256 against the registry's: a file damaged on
  disk since (a bad sector, a stray write), even with its size unchanged, would otherwise be
  refused by the checkpoint's own check at every load, for good (a crash loop at start), with
  nothing ever removing it. A damaged directory is removed and the version fetched anew. The cost
  (the model's ~20 MB hashed) is paid when a process first uses a version and when the active
  version changes, not per request: `ModelSlot` asks for a directory only then.
- A process killed during a fetch leaves its temporary directory (a hidden one) behind: each
  fetch removes the cache's temporary directories last modified more than an hour ago
  (`STALE_TEMP_S`), far longer than a fetch takes, so a fetch still running elsewhere keeps its.
- Version zero is the shipped model (`models/default`, with its MMI reverse model next to it):
  each process answers it from its own shipped directory, wherever the registering process had
  it. A version registered without files (before they were stored) is its `checkpoint_path`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from config import Settings
from nlp.errors import CheckpointError
from storage import model_files
from storage.database import Database
from storage.model_files import StoredFile
from storage.model_versions import VersionInfo

log = logging.getLogger(__name__)

VERSION_ZERO = "default"
CACHE_DIR_NAME = "model-cache"
STALE_TEMP_S = 3600.0  # a temporary directory of the cache older than this is a dead fetch's


class UnverifiedModelError(CheckpointError):
    """A stored file of a version does not match its SHA-256 (or its size, or its name is not a
    plain file name): the version is refused."""


def model_cache_dir(settings: Settings) -> Path:
    """Where a process keeps the versions it fetched: in its own data directory."""
    return settings.data_dir / CACHE_DIR_NAME


def read_checkpoint_files(directory: Path) -> dict[str, bytes]:
    """Every file of a checkpoint directory (name -> content) to store with its version; hidden
    files (temporary ones) and subdirectories are not part of a checkpoint."""
    return {
        path.name: path.read_bytes()
        for path in sorted(Path(directory).iterdir())
        if path.is_file() and not path.name.startswith(".")
    }


def cache_key(files: Sequence[StoredFile]) -> str:
    """The SHA-256 of a version's file list: equal keys, equal files."""
    listing = "".join(f"{f.name}\0{f.sha256}\0{f.size}\n" for f in sorted(files, key=_name))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


class ModelFiles:
    """Finds (and materialises) the checkpoint directory of a registered version on this host."""

    def __init__(self, db: Database, cache_dir: Path | None, shipped_dir: Path) -> None:
        self.db = db
        self.cache_dir = cache_dir  # None: stored versions are read from their checkpoint_path
        self.shipped_dir = Path(shipped_dir)

    def directory(self, version: VersionInfo) -> Path:
        """The version's checkpoint directory here; blocking (database, disk)."""
        files = self.db.read(model_files.list_files, version.id)
        if files and self.cache_dir is not None:
            return self._materialised(version, files)
        if not files and version.name == VERSION_ZERO:
            return self.shipped_dir
        return Path(version.checkpoint_path)

    def _materialised(self, version: VersionInfo, files: list[StoredFile]) -> Path:
        assert self.cache_dir is not None
        final = self.cache_dir / cache_key(files)
        if _verified(final, files):
            return final
        if final.exists():
            # Damaged since (this code renames only verified directories): fetched anew.
            log.warning(
                "model version %s: cached %s does not match the registry; fetching it again",
                version.name,
                final,
            )
            _discard(final)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(self.cache_dir)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name[:16]}.", dir=self.cache_dir))
        try:
            for stored in files:
                _check_name(version, stored.name)
                content = self.db.read(model_files.read_content, version.id, stored.name)
                _write(tmp / stored.name, content)
            for stored in files:
                _verify(version, tmp / stored.name, stored)
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide the model from other users
            fsync_dir(tmp)
            try:
                os.rename(tmp, final)
            except OSError:  # another process (same cache) renamed its copy first
                if not _verified(final, files):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
            fsync_dir(self.cache_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (before anything points at its result)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _name(stored: StoredFile) -> str:
    return stored.name


def _verified(directory: Path, files: Sequence[StoredFile]) -> bool:
    """Whether `directory` holds every file as the registry has it: sizes first (a cheap answer
    for a truncated file), then every SHA-256 (a damaged byte keeps the size)."""
    if not all(_plain(f.name) for f in files):
        return False  # never read outside the cache; the fetch refuses the name
    try:
        if not all((directory / f.name).stat().st_size == f.size for f in files):
            return False
        return all(_digest(directory / f.name) == (f.sha256, f.size) for f in files)
    except OSError:
        return False


def _discard(directory: Path) -> None:
    """Remove a damaged cache directory: renamed to a temporary name first (one step), so its
    final name is free for the fresh copy even if deleting fails; what is left then is a
    temporary directory, removed once stale."""
    doomed = directory.with_name(f".{directory.name[:16]}.{uuid.uuid4().hex}")
    try:
        os.rename(directory, doomed)
    except OSError:  # gone already (another process discarded it), or not renamable
        doomed = directory
    shutil.rmtree(doomed, ignore_errors=True)


def _remove_stale_temps(cache_dir: Path) -> None:
    """Remove the cache's temporary (hidden) directories last modified over `STALE_TEMP_S`
    ago: left by a process killed during a fetch. A live fetch creates its files (each one
    updates the directory's time) seconds apart, so it is never taken for a dead one."""
    cutoff = time.time() - STALE_TEMP_S
    for entry in cache_dir.iterdir():
        try:
            stale = entry.name.startswith(".") and entry.is_dir() and entry.stat().st_mtime < cutoff
        except OSError:  # removed meanwhile by another process
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


def _plain(name: str) -> bool:
    return bool(name) and name == Path(name).name and not name.startswith(".") and "\\" not in name


def _check_name(version: VersionInfo, name: str) -> None:
    """A stored name is written under the cache directory: a path ("../x", "a/b") never is."""
    if not _plain(name):
        raise UnverifiedModelError(
            f"model version {version.name}: stored file name {name!r} is not a plain file name"
        )


def _write(path: Path, content: bytes) -> None:
    with path.open("wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    path.chmod(0o644)


def _digest(path: Path) -> tuple[str, int]:
    """The SHA-256 (hex) and size of a file on disk, read a block at a time."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as written:
        for block in iter(lambda: written.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _verify(version: VersionInfo, path: Path, stored: StoredFile) -> None:
    got, size = _digest(path)
    if got != stored.sha256 or size != stored.size:
        raise UnverifiedModelError(
            f"model version {version.name}: {stored.name} does not match the registry "
            f"(SHA-256 {got[:16]}..., {size} bytes; registered {stored.sha256[:16]}..., "
            f"{stored.size} bytes)"
        )
