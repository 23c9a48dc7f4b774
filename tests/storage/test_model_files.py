"""A model version's files in the database: stored with the version in one transaction, listed
with their SHA-256, read back byte for byte, one file at a time."""

from __future__ import annotations

import hashlib

import pytest

from storage import model_files, model_versions
from storage.database import Database
from storage.errors import DuplicateError, NotFoundError

FILES = {
    "model.safetensors": bytes(range(256)) * 100,
    "config.json": b'{"format_version": 1}\n',
    "vocab.json": '["<pad>", "caf\u00e9"]'.encode(),
}


def test_a_version_registered_with_files_lists_and_returns_them_exactly(
    database: Database,
) -> None:
    with database.begin() as session:
        version = model_versions.register_version(session, "r1", "/srv/a/r1", files=FILES)
    listed = database.read(model_files.list_files, version.id)
    assert [f.name for f in listed] == sorted(FILES)
    for stored in listed:
        content = FILES[stored.name]
        assert stored.sha256 == hashlib.sha256(content).hexdigest()
        assert stored.size == len(content)
        assert database.read(model_files.read_content, version.id, stored.name) == content


def test_a_version_registered_without_files_has_none(database: Database) -> None:
    with database.begin() as session:
        version = model_versions.register_version(session, "default", "/opt/models/default")
    assert database.read(model_files.list_files, version.id) == []
    with pytest.raises(NotFoundError, match=r"no stored file 'model\.safetensors'"):
        database.read(model_files.read_content, version.id, "model.safetensors")


def test_a_refused_registration_stores_no_files(database: Database) -> None:
    with database.begin() as session:
        first = model_versions.register_version(session, "r1", "/srv/a/r1", files=FILES)
    with pytest.raises(DuplicateError), database.begin() as session:
        model_versions.register_version(session, "r1", "/srv/b/r1", files={"other.bin": b"x"})
    assert [f.name for f in database.read(model_files.list_files, first.id)] == sorted(FILES)
