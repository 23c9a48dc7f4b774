"""Alembic environment: the URL from `config`, the metadata from `storage.tables`.

Two ways in:
- `chatbot db ...` / `storage.schema_revision` build the Alembic config in code and hand over a
  connection of the app's engine in `config.attributes["connection"]`, already inside the
  transaction (and, on SQLite, with foreign keys switched off); tests do the same.
- plain `alembic ...` with the repo's `alembic.ini`: the URL is `sqlalchemy.url` if set there,
  else the settings' (`CHATBOT_DATABASE_URL`, default a SQLite file in the data directory).
SQLite runs in batch mode (it cannot ALTER most things in place); types are compared.
"""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import URL, Connection

from config import load_settings
from storage.database import Database, normalize_url
from storage.schema_revision import check_foreign_keys, sqlite_foreign_keys_off
from storage.tables import Base, UtcDateTime

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Tables that other libraries keep in the app database and create themselves: APScheduler's job
# store (`bot.retraining.scheduler`). Not ours to migrate, so `chatbot db check` ignores them.
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})


def _include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
    return table not in FOREIGN_TABLES


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write `UtcDateTime` as the plain type the database has: revisions stay import-free."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _url() -> URL:
    configured = config.get_main_option("sqlalchemy.url")
    return normalize_url(configured or load_settings().resolved_database_url)


def _configure(**options: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        render_item=_render_item,
        include_object=_include_object,
        **options,
    )


def run_migrations_offline() -> None:
    """`alembic ... --sql`: print the SQL instead of running it."""
    url = _url()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run_on(given)
        return
    database = Database(_url(), load_settings().storage)
    try:
        with (
            database.engine.connect() as connection,
            sqlite_foreign_keys_off(connection),
            connection.begin(),
        ):
            _run_on(connection)
            check_foreign_keys(connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
