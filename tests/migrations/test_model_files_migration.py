"""Revision 0006 (model_files): upgrade and downgrade on SQLite and PostgreSQL, the stored bytes
coming back exactly, the files going with their version, and the registry surviving a downgrade."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import column, delete, func, insert, inspect, select, table
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from storage import schema_revision
from storage.database import Database

# The tables as revision 0006 knows them, whatever later revisions add to the ORM models.
_VERSIONS = table(
    "model_versions",
    column("id"),
    column("name"),
    column("checkpoint_path"),
    column("created_at"),
    column("is_active"),
)
_FILES = table(
    "model_files",
    column("model_version_id"),
    column("name"),
    column("sha256"),
    column("size"),
    column("content"),
)
# Every byte value, NULs included, and more than a page: bytea / BLOB, not text.
WEIGHTS = bytes(range(256)) * 4099


@pytest.fixture
def db(empty_database_url: URL) -> Iterator[Database]:
    database = Database(empty_database_url)
    yield database
    database.dispose()


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names())


def _files(db: Database) -> dict[tuple[int, str], tuple[str, int, bytes]]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(_FILES.c.model_version_id, _FILES.c.name, _FILES.c.sha256)
            .add_columns(_FILES.c.size, _FILES.c.content)
            .order_by(_FILES.c.model_version_id, _FILES.c.name)
        )
        return {(v, n): (sha, size, bytes(content)) for v, n, sha, size, content in rows}


def _add_versions(db: Database, *ids: int) -> None:
    now = datetime.now(UTC)
    with db.engine.begin() as connection:
        connection.execute(
            insert(_VERSIONS),
            [
                {"id": n, "name": f"v{n}", "checkpoint_path": f"/srv/a/v{n}", "is_active": False}
                | {"created_at": now}
                for n in ids
            ],
        )


def _version_count(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(_VERSIONS)).scalar_one()


def test_0006_model_files_upgrade_and_downgrade_keep_the_registry(db: Database) -> None:
    schema_revision.upgrade(db, "0005")
    _add_versions(db, 1, 2)
    assert "model_files" not in _tables(db)

    schema_revision.upgrade(db, "0006")
    digest = hashlib.sha256(WEIGHTS).hexdigest()
    with db.engine.begin() as connection:
        connection.execute(
            insert(_FILES),
            [
                {"model_version_id": n, "name": "model.safetensors", "sha256": digest}
                | {"size": len(WEIGHTS), "content": WEIGHTS}
                for n in (1, 2)
            ]
            + [
                {"model_version_id": 1, "name": "config.json", "sha256": "0" * 64}
                | {"size": 2, "content": b"{}"}
            ],
        )
    stored = _files(db)
    assert stored[(1, "model.safetensors")] == (digest, len(WEIGHTS), WEIGHTS)  # byte for byte
    assert stored[(1, "config.json")] == ("0" * 64, 2, b"{}")
    assert len(stored) == 3

    with db.engine.begin() as connection:  # a deleted version takes its files along
        connection.execute(delete(_VERSIONS).where(_VERSIONS.c.id == 1))
    assert set(_files(db)) == {(2, "model.safetensors")}

    schema_revision.downgrade(db, "0005")
    assert "model_files" not in _tables(db)
    assert _version_count(db) == 1  # the registry stays; only the stored files go
    schema_revision.upgrade(db, "0006")
    assert _files(db) == {}
    assert _version_count(db) == 1
    schema_revision.upgrade(db)
    schema_revision.check_models(db)


def test_0006_refuses_a_second_file_of_the_same_name_in_a_version(db: Database) -> None:
    schema_revision.upgrade(db, "0006")
    _add_versions(db, 1)
    row = {"model_version_id": 1, "name": "vocab.json", "sha256": "a" * 64, "size": 1}
    with db.engine.begin() as connection:
        connection.execute(insert(_FILES).values(**row, content=b"x"))
    with pytest.raises(IntegrityError), db.engine.begin() as connection:
        connection.execute(insert(_FILES).values(**row, content=b"y"))
    assert _files(db)[(1, "vocab.json")][2] == b"x"
