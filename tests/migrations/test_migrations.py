"""Migrations: models and revisions agree, the round trip works, a stale schema is refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import column, delete, func, insert, inspect, select, table, text
from sqlalchemy.engine import URL

from storage import feedback, schema_revision
from storage.conversations import ChatRef, UserRef, save_exchange
from storage.database import Database
from storage.errors import MigrationError, SchemaOutOfDateError
from storage.tables import Base, Chat, Feedback, Message, User

APP_TABLES = set(Base.metadata.tables)

# This code's newest revision, and a later one, as a future schema change would look: SQLite must
# rebuild `users` in batch mode, which (with foreign keys on) would cascade-delete every message of
# every user. The imagined revision follows whatever the head is, so adding a real migration does
# not collide with it.
(HEAD,) = schema_revision.head_revisions()
NEXT = f"{int(HEAD) + 1:04d}"
REVISION_NEXT = f'''"""Add users.locale.

Revision ID: {NEXT}
Revises: {HEAD}
"""

import sqlalchemy as sa
from alembic import op

revision = "{NEXT}"
down_revision = "{HEAD}"
branch_labels = None
depends_on = None


def _recreate() -> str:
    # What SQLite needs for most changes (a type, a constraint); PostgreSQL alters in place.
    return "always" if op.get_bind().dialect.name == "sqlite" else "auto"


def upgrade() -> None:
    with op.batch_alter_table("users", recreate=_recreate()) as batch:
        batch.add_column(sa.Column("locale", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", recreate=_recreate()) as batch:
        batch.drop_column("locale")
'''


@pytest.fixture
def db(empty_database_url: URL) -> Iterator[Database]:
    database = Database(empty_database_url)
    yield database
    database.dispose()


@pytest.fixture
def newer_code(tmp_path: Path) -> Path:
    """A copy of the migrations with one more revision: the code of a later release."""
    scripts = tmp_path / "migrations"
    shutil.copytree(
        schema_revision.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__")
    )
    (scripts / "versions" / f"{NEXT}_users_locale.py").write_text(REVISION_NEXT, encoding="utf-8")
    return scripts


def _tables(db: Database) -> set[str]:
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def _count(db: Database, model: type) -> int:
    with db.session() as session:
        return session.execute(select(func.count()).select_from(model)).scalar_one()


def test_models_and_migrations_agree(db: Database) -> None:
    schema_revision.upgrade(db)
    schema_revision.check_models(db)  # `alembic check`


def test_the_check_notices_a_schema_that_drifted(db: Database) -> None:
    schema_revision.upgrade(db)
    with db.engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_messages_created_at"))
    with pytest.raises(MigrationError, match="disagree"):
        schema_revision.check_models(db)


def test_upgrade_downgrade_upgrade_round_trip(db: Database) -> None:
    schema_revision.upgrade(db)
    assert _tables(db) == APP_TABLES
    assert schema_revision.schema_status(db).up_to_date
    schema_revision.downgrade(db, "base")
    assert _tables(db) == set()
    assert schema_revision.schema_status(db).current == ()
    schema_revision.upgrade(db)
    assert _tables(db) == APP_TABLES
    schema_revision.check_models(db)
    with db.begin() as session:  # and the schema works
        save_exchange(session, ChatRef("console", "c"), UserRef("console", "u"), "q", "a")
    assert _count(db, Message) == 2


def test_an_unknown_revision_is_a_clear_error(db: Database) -> None:
    with pytest.raises(MigrationError, match="Can't locate revision"):
        schema_revision.upgrade(db, "nonexistent")
    with pytest.raises(MigrationError):
        schema_revision.downgrade(db, "nonexistent")


def test_the_app_refuses_a_database_without_schema(db: Database) -> None:
    with pytest.raises(SchemaOutOfDateError, match=r"no schema yet.*run `chatbot db upgrade`"):
        schema_revision.ensure_schema(db)


def test_the_app_runs_on_a_current_schema(db: Database) -> None:
    schema_revision.upgrade(db)
    schema_revision.ensure_schema(db)


def test_the_app_refuses_an_old_schema_and_names_the_command(
    db: Database, newer_code: Path
) -> None:
    schema_revision.upgrade(db)  # HEAD: what the previous release left
    config = schema_revision.alembic_config(newer_code)
    with pytest.raises(SchemaOutOfDateError) as refused:
        schema_revision.ensure_schema(db, config=config)
    assert str(refused.value) == (
        f"the database schema is out of date (at {HEAD}, code needs {NEXT}): "
        "run `chatbot db upgrade`"
    )


def test_auto_upgrade_migrates_and_keeps_every_row(db: Database, newer_code: Path) -> None:
    schema_revision.upgrade(db)
    with db.begin() as session:
        saved = save_exchange(session, ChatRef("console", "c"), UserRef("console", "u"), "q", "a")
        feedback.set_feedback(session, saved.reply_id, saved.user_id, 1)
    config = schema_revision.alembic_config(newer_code)
    schema_revision.ensure_schema(db, auto_upgrade=True, config=config)
    assert schema_revision.schema_status(db, config).current == (NEXT,)
    assert "locale" in {c["name"] for c in inspect(db.engine).get_columns("users")}
    # The rebuilt `users` table did not take its users' messages and feedback with it.
    assert (_count(db, User), _count(db, Message), _count(db, Feedback)) == (1, 2, 1)
    with db.engine.connect() as connection:
        if db.dialect == "sqlite":
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    schema_revision.downgrade(db, HEAD, config)
    assert (_count(db, User), _count(db, Message), _count(db, Feedback)) == (1, 2, 1)
    schema_revision.check_models(db)


def test_the_app_refuses_a_schema_newer_than_its_code(db: Database, newer_code: Path) -> None:
    schema_revision.upgrade(db, "heads", schema_revision.alembic_config(newer_code))
    with pytest.raises(SchemaOutOfDateError, match=f"at revision {NEXT}, which this code does not"):
        schema_revision.ensure_schema(db, auto_upgrade=True)


# The tables as revision 0005 knows them, whatever later revisions add to the ORM models.
_CHATS_0005 = table(
    "chats",
    column("id"),
    column("platform"),
    column("external_id"),
    column("kind"),
    column("created_at"),
)
_CONTEXT_STARTS_0005 = table(
    "chat_context_starts", column("chat_id"), column("after_message_id"), column("reset_at")
)


def _context_starts(db: Database) -> dict[int, int]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(_CONTEXT_STARTS_0005.c.chat_id, _CONTEXT_STARTS_0005.c.after_message_id)
        )
        return {chat_id: after for chat_id, after in rows}


def test_0005_context_starts_upgrade_and_downgrade_keep_the_chats(db: Database) -> None:
    schema_revision.upgrade(db, "0004")
    now = datetime.now(UTC)
    with db.engine.begin() as connection:
        connection.execute(
            insert(_CHATS_0005),
            [
                {"id": n, "platform": "console", "external_id": f"c{n}", "kind": "private"}
                | {"created_at": now}
                for n in (1, 2)
            ],
        )
    assert "chat_context_starts" not in _tables(db)

    schema_revision.upgrade(db, "0005")
    with db.engine.begin() as connection:
        connection.execute(
            insert(_CONTEXT_STARTS_0005),
            [{"chat_id": n, "after_message_id": 10 * n, "reset_at": now} for n in (1, 2)],
        )
    assert _context_starts(db) == {1: 10, 2: 20}
    with db.engine.begin() as connection:  # a deleted chat takes its reset along
        connection.execute(delete(_CHATS_0005).where(_CHATS_0005.c.id == 1))
    assert _context_starts(db) == {2: 20}

    schema_revision.downgrade(db, "0004")
    assert "chat_context_starts" not in _tables(db)
    assert _count(db, Chat) == 1
    schema_revision.upgrade(db, "0005")
    assert _context_starts(db) == {}
    assert _count(db, Chat) == 1
