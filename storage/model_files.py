"""A model version's files, stored with its registry row: what lets a replica on any host serve
a version that another host trained, with no shared filesystem.

One row per file (`model_files`: version, name, SHA-256, size, content). The digest is computed
here from exactly the bytes stored, so a reader can verify what it got against what was written.
Reading is per file, so a reader holds one file's bytes at a time, never a whole model.
Call `store_files` inside the transaction that registers the version: a version is never visible
without its files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from storage.errors import NotFoundError
from storage.tables import ModelFile


@dataclass(frozen=True)
class StoredFile:
    """What the registry says a file of a version is: its name in the checkpoint directory, its
    SHA-256 (hex) and its size in bytes."""

    name: str
    sha256: str
    size: int


def sha256_hex(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def store_files(session: Session, version_id: int, files: Mapping[str, bytes]) -> list[StoredFile]:
    """Store `files` (name -> content) as the files of version `version_id`."""
    stored = [
        StoredFile(name, sha256_hex(content), len(content))
        for name, content in sorted(files.items())
    ]
    if stored:
        session.execute(
            insert(ModelFile),
            [
                {
                    "model_version_id": version_id,
                    "name": f.name,
                    "sha256": f.sha256,
                    "size": f.size,
                    "content": files[f.name],
                }
                for f in stored
            ],
        )
    return stored


def list_files(session: Session, version_id: int) -> list[StoredFile]:
    """The files of a version, by name (empty: the version lives only on a local disk)."""
    rows = session.execute(
        select(ModelFile.name, ModelFile.sha256, ModelFile.size)
        .where(ModelFile.model_version_id == version_id)
        .order_by(ModelFile.name)
    )
    return [StoredFile(*row) for row in rows]


def read_content(session: Session, version_id: int, name: str) -> bytes:
    """The stored bytes of one file, as they are: verifying them is the reader's job."""
    content = session.execute(
        select(ModelFile.content).where(
            ModelFile.model_version_id == version_id, ModelFile.name == name
        )
    ).scalar_one_or_none()
    if content is None:
        raise NotFoundError(f"model version {version_id} has no stored file {name!r}")
    return bytes(content)  # psycopg may hand back a memoryview
