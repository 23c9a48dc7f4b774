"""Revision 0007 (handled_commands.update_id): upgrade and downgrade on SQLite and PostgreSQL,
claims made before it kept (without an update), the uniqueness of a claim surviving both ways."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import column, insert, inspect, select, table
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from storage import schema_revision
from storage.database import Database
from storage.handled_commands import CommandClaim, claim_command

# The table as revisions 0002-0006 know it, whatever later revisions add to the ORM model.
_CLAIMS = table(
    "handled_commands",
    column("platform"),
    column("chat_external_id"),
    column("external_id"),
    column("created_at"),
)


@pytest.fixture
def db(empty_database_url: URL) -> Iterator[Database]:
    database = Database(empty_database_url)
    yield database
    database.dispose()


def _columns(db: Database) -> set[str]:
    return {c["name"] for c in inspect(db.engine).get_columns("handled_commands")}


def _claim_before_0007(db: Database, external_id: str) -> None:
    row = {"platform": "telegram", "chat_external_id": "101", "external_id": external_id}
    with db.engine.begin() as connection:
        connection.execute(insert(_CLAIMS), [row | {"created_at": datetime.now(UTC)}])


def _claimed(db: Database) -> list[str]:
    with db.engine.connect() as connection:
        return list(connection.scalars(select(_CLAIMS.c.external_id).order_by("external_id")))


def test_0007_upgrade_and_downgrade_keep_the_claims(db: Database) -> None:
    schema_revision.upgrade(db, "0006")
    _claim_before_0007(db, "5")
    assert "update_id" not in _columns(db)

    schema_revision.upgrade(db, "0007")
    assert "update_id" in _columns(db)
    # A claim from before has no update: any update carrying its message is a redelivery.
    assert db.transact(claim_command, "telegram", 101, 5, update_id=70) is CommandClaim.DUPLICATE
    assert db.transact(claim_command, "telegram", 101, 6, update_id=71) is CommandClaim.NEW
    assert db.transact(claim_command, "telegram", 101, 6, update_id=71) is CommandClaim.RESUMED

    schema_revision.downgrade(db, "0006")
    assert "update_id" not in _columns(db)
    assert _claimed(db) == ["5", "6"]
    with pytest.raises(IntegrityError):  # still one claim per message (SQLite rebuilt the table)
        _claim_before_0007(db, "6")

    schema_revision.upgrade(db)
    assert _claimed(db) == ["5", "6"]
    assert db.transact(claim_command, "telegram", 101, 6, update_id=71) is CommandClaim.DUPLICATE
    schema_revision.check_models(db)
