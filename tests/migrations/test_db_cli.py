"""`chatbot db ...`: upgrade, current, history, check, downgrade against the settings' database."""

from __future__ import annotations

import argparse

import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import URL

from bot.cli import db as db_command
from config import Settings
from storage import schema_revision
from storage.database import Database
from storage.errors import StorageError

# The newest revision of this code: the tests follow it as migrations are added.
(HEAD,) = schema_revision.head_revisions()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatbot")
    db_command.register(parser.add_subparsers(dest="command", required=True))
    return parser


def _chatbot(settings: Settings, *argv: str) -> int:
    args = _parser().parse_args(argv)
    return args.run(args, settings)


def _tables(url: URL) -> set[str]:
    database = Database(url)
    try:
        return set(inspect(database.engine).get_table_names())
    finally:
        database.dispose()


def test_db_commands_migrate_the_configured_database(
    empty_database_url: URL, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=empty_database_url.render_as_string(hide_password=False))

    assert _chatbot(settings, "db", "current") == 0
    assert (
        f"at <none> (out of date: head is {HEAD}; run `chatbot db upgrade`)"
        in capsys.readouterr().out
    )

    assert _chatbot(settings, "db", "upgrade") == 0
    assert capsys.readouterr().out.strip().endswith(f"at {HEAD}")
    assert "messages" in _tables(empty_database_url)

    assert _chatbot(settings, "db", "current") == 0
    assert f"at {HEAD} (head, up to date)" in capsys.readouterr().out
    assert _chatbot(settings, "db", "check") == 0
    assert "models and migrations agree" in capsys.readouterr().out

    assert _chatbot(settings, "db", "downgrade", "base") == 0
    assert capsys.readouterr().out.strip().endswith("at <none>")
    assert _tables(empty_database_url) == {"alembic_version"}


def test_history_needs_no_database(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/none")
    assert _chatbot(settings, "db", "history") == 0
    lines = capsys.readouterr().out.splitlines()
    assert f" -> {HEAD} (head): " in lines[0]
    assert lines[-1].startswith("<base> -> 0001: Initial")


def test_a_bad_revision_is_a_one_line_storage_error(empty_database_url: URL) -> None:
    settings = Settings(database_url=empty_database_url.render_as_string(hide_password=False))
    with pytest.raises(StorageError) as error:
        _chatbot(settings, "db", "upgrade", "not-a-revision")
    assert "\n" not in str(error.value)
    assert "not-a-revision" in str(error.value)


def test_downgrade_needs_a_revision() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["db", "downgrade"])
