"""`chatbot db upgrade [REV] | downgrade REV | current | history | check`: the schema's migrations.

Runs against the settings' database (`CHATBOT_DATABASE_URL`, default a SQLite file in the data
directory). A bad revision is a `MigrationError`: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from bot.cli.errors import CliError
from bot.retention import prune
from config import Settings
from storage import schema_revision
from storage.database import Database

MAX_RETENTION_DAYS = 36_500  # a hundred years


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("db", help="migrate the database schema (Alembic)")
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = commands.add_parser("upgrade", help="migrate up to REV (default: the newest)")
    upgrade.add_argument("revision", nargs="?", default="heads", metavar="REV")
    downgrade = commands.add_parser("downgrade", help="migrate down to REV (`base`: empty)")
    downgrade.add_argument("revision", metavar="REV")
    commands.add_parser("current", help="show the database's revision and whether it is current")
    commands.add_parser("history", help="list the migrations, newest first")
    commands.add_parser("check", help="fail if the models and the migrations disagree")
    commands.add_parser(
        "prune", help="delete messages older than CHATBOT_STORAGE__RETENTION_DAYS (if set)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.db_command == "history":
        for info in schema_revision.history():
            head = " (head)" if info.is_head else ""
            print(f"{info.down_revision or '<base>'} -> {info.revision}{head}: {info.message}")
        return 0
    db = Database.from_settings(settings)
    try:
        return _run_on(db, args, settings)
    finally:
        db.dispose()


def _run_on(db: Database, args: argparse.Namespace, settings: Settings) -> int:
    where = db.url.render_as_string(hide_password=True)
    if args.db_command == "upgrade":
        schema_revision.upgrade(db, args.revision)
        print(f"{where}: at {_revisions(schema_revision.schema_status(db).current)}")
    elif args.db_command == "downgrade":
        schema_revision.downgrade(db, args.revision)
        print(f"{where}: at {_revisions(schema_revision.schema_status(db).current)}")
    elif args.db_command == "current":
        status = schema_revision.schema_status(db)
        if status.up_to_date:
            state = "(head, up to date)"
        elif not status.known:
            state = f"(unknown to this code, which ends at {_revisions(status.heads)})"
        else:
            state = f"(out of date: head is {_revisions(status.heads)}; run `chatbot db upgrade`)"
        print(f"{where}: at {_revisions(status.current)} {state}")
    elif args.db_command == "prune":
        days = settings.storage.retention_days
        if days is None:
            print(f"{where}: retention is off (CHATBOT_STORAGE__RETENTION_DAYS unset): kept all")
        else:
            if not 0 <= days <= MAX_RETENTION_DAYS:  # a cutoff before year 1 overflows
                raise CliError(
                    f"CHATBOT_STORAGE__RETENTION_DAYS must be 0..{MAX_RETENTION_DAYS}, not {days}"
                )
            schema_revision.ensure_schema(db)
            print(f"{where}: deleted {prune(db, days)} messages older than {days} days")
    elif args.db_command == "check":
        schema_revision.check_models(db)
        print(f"{where}: models and migrations agree")
    return 0


def _revisions(revisions: tuple[str, ...]) -> str:
    return ", ".join(revisions) if revisions else "<none>"
