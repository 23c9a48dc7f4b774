"""Where a version's checkpoint lies on this host: a version stored in the database is fetched
into the local cache under the SHA-256 of its file list, every file verified, and a mismatch
leaves nothing behind; version zero is this host's own shipped model."""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from bot.model_files import (
    VERSION_ZERO,
    ModelFiles,
    UnverifiedModelError,
    cache_key,
    read_checkpoint_files,
)
from storage import model_files, model_versions
from storage.database import Database
from storage.model_versions import VersionInfo
from storage.tables import ModelFile


def _digests(directory: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
    }


def _store(db: Database, name: str, directory: Path) -> VersionInfo:
    """`directory` registered with its files, at a path that does not exist on this host."""
    with db.begin() as session:
        return model_versions.register_version(
            session, name, f"/srv/host-a/models/{name}", files=read_checkpoint_files(directory)
        )


def _corrupt(db: Database, version: VersionInfo, name: str) -> None:
    """Flip one byte of a stored file, leaving its registered SHA-256 as it was."""
    content = bytearray(db.read(model_files.read_content, version.id, name))
    content[len(content) // 2] ^= 0xFF
    with db.begin() as session:
        session.execute(
            update(ModelFile)
            .where(ModelFile.model_version_id == version.id, ModelFile.name == name)
            .values(content=bytes(content))
        )


def test_a_stored_version_is_fetched_into_the_cache_under_its_key_and_verified(
    db: Database, tiny_model_dir: Path, tmp_path: Path
) -> None:
    version = _store(db, "r1", tiny_model_dir)
    cache = tmp_path / "host-b" / "model-cache"
    files = ModelFiles(db, cache, tmp_path / "host-b" / "shipped")

    directory = files.directory(version)

    stored = db.read(model_files.list_files, version.id)
    assert directory == cache / cache_key(stored)
    assert _digests(directory) == _digests(tiny_model_dir) == {f.name: f.sha256 for f in stored}
    assert [p.name for p in cache.iterdir()] == [directory.name]  # no temporary left behind
    assert files.directory(version) == directory  # found again, not fetched again


def test_a_corrupt_stored_file_is_refused_and_nothing_is_left_in_the_cache(
    db: Database, tiny_model_dir: Path, tmp_path: Path
) -> None:
    version = _store(db, "r1", tiny_model_dir)
    _corrupt(db, version, "model.safetensors")
    cache = tmp_path / "model-cache"

    with pytest.raises(UnverifiedModelError, match=r"r1: model\.safetensors does not match"):
        ModelFiles(db, cache, tmp_path / "shipped").directory(version)

    assert list(cache.iterdir()) == []


def test_a_stored_file_name_that_is_a_path_is_refused(
    db: Database, tiny_model_dir: Path, tmp_path: Path
) -> None:
    version = _store(db, "r1", tiny_model_dir)
    with db.begin() as session:  # a tampered registry row
        session.execute(
            insert(ModelFile).values(
                model_version_id=version.id,
                name="../escaped",
                sha256="0" * 64,
                size=1,
                content=b"x",
            )
        )
    cache = tmp_path / "host" / "model-cache"

    with pytest.raises(UnverifiedModelError, match="not a plain file name"):
        ModelFiles(db, cache, tmp_path / "shipped").directory(version)

    assert list(cache.iterdir()) == [] and not (tmp_path / "host" / "escaped").exists()


def test_version_zero_is_this_hosts_shipped_model_and_unstored_versions_their_path(
    db: Database, tmp_path: Path
) -> None:
    with db.begin() as session:
        zero = model_versions.register_version(session, VERSION_ZERO, "/srv/host-a/default")
        local = model_versions.register_version(session, "old", str(tmp_path / "old"))
    files = ModelFiles(db, tmp_path / "model-cache", tmp_path / "shipped")
    assert files.directory(zero) == tmp_path / "shipped"
    assert files.directory(local) == tmp_path / "old"
    assert not (tmp_path / "model-cache").exists()


def test_processes_sharing_a_cache_fetch_a_version_to_one_complete_directory(
    db: Database, tiny_model_dir: Path, tmp_path: Path
) -> None:
    version = _store(db, "r1", tiny_model_dir)
    cache = tmp_path / "model-cache"
    replicas = [ModelFiles(db, cache, tmp_path / "shipped") for _ in range(4)]

    with ThreadPoolExecutor(len(replicas)) as pool:
        found = list(pool.map(lambda files: files.directory(version), replicas))

    assert len(set(found)) == 1
    assert _digests(found[0]) == _digests(tiny_model_dir)
    assert [p.name for p in cache.iterdir()] == [found[0].name]


def test_a_cached_file_damaged_with_its_size_unchanged_is_fetched_again_on_the_next_use(
    db: Database, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A size check alone would serve the damaged file, which the checkpoint's own check then
    refuses at every load (a crash loop at start); the cache is repaired from the database."""
    version = _store(db, "r1", tiny_model_dir)
    cache = tmp_path / "model-cache"
    directory = ModelFiles(db, cache, tmp_path / "shipped").directory(version)
    weights = directory / "model.safetensors"
    content = bytearray(weights.read_bytes())
    content[len(content) // 2] ^= 0xFF
    weights.write_bytes(bytes(content))  # same size, one byte flipped

    again = ModelFiles(db, cache, tmp_path / "shipped").directory(version)  # a restart

    assert again == directory
    assert _digests(again) == _digests(tiny_model_dir)
    assert [p.name for p in cache.iterdir()] == [directory.name]  # nothing else left behind


def test_a_fetch_removes_stale_temporary_directories_and_keeps_fresh_ones(
    db: Database, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A process killed during a fetch leaves its temporary directory: removed by a later fetch
    once it is over an hour old, while one that may be a fetch still running is kept."""
    version = _store(db, "r1", tiny_model_dir)
    cache = tmp_path / "model-cache"
    stale, fresh = cache / ".0123456789abcdef.dead", cache / ".0123456789abcdef.live"
    for temp in (stale, fresh):
        temp.mkdir(parents=True)
        (temp / "model.safetensors").write_bytes(b"half written")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))

    directory = ModelFiles(db, cache, tmp_path / "shipped").directory(version)

    assert sorted(p.name for p in cache.iterdir()) == sorted([directory.name, fresh.name])
