"""Entry point of `chatbot`: one argparse subcommand per module, user errors -> one line, exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError, OperationalError

from bot.cli import chat, db, export, model_admin, model_commands, retrain, schedule, telegram
from bot.cli.errors import CliError, one_line
from config import Settings, load_settings
from nlp.errors import NlpError
from storage.errors import StorageError
from storage.faults import describe

# Each module exposes `register(subparsers)`; the parser it adds sets `run(args, settings) -> int`.
COMMAND_MODULES: tuple[ModuleType, ...] = (
    model_commands,
    model_admin,
    chat,
    db,
    telegram,
    retrain,
    schedule,
    export,
)
USER_ERRORS = (CliError, NlpError, StorageError)
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2 as well
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="chatbot", description="A GRU seq2seq chatbot with attention.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module in COMMAND_MODULES:
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Progress of long jobs (training) is logged at INFO; a chat is for people: warnings only.
    level = logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING)
    settings: Settings | None = None
    try:
        settings = _load_settings()
        _configure_logging(level, settings)
        return int(args.run(args, settings) or 0)
    except USER_ERRORS as exc:
        print(f"chatbot {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (ValidationError, SettingsError) as exc:  # SettingsError: e.g. a renamed variable
        print(f"chatbot: invalid setting {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (OperationalError, DatabaseError) as exc:
        # A database that cannot be used at all: a file that is not SQLite, one that cannot be
        # opened or written, a server gone. Errors about one statement (a constraint, bad SQL)
        # are bugs, not bad input: they keep their traceback.
        if not (isinstance(exc, OperationalError) or type(exc) is DatabaseError):
            raise
        where = _database(settings)
        print(
            f"chatbot {args.command}: error: cannot use {where}: {describe(exc)}", file=sys.stderr
        )
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _configure_logging(level: int, settings: Settings) -> None:
    """Text or JSON lines (`CHATBOT_LOG_FORMAT`); JSON lines hash chat ids with the deployment's
    salt, made and stored on first use unless `CHATBOT_LOG_SALT` gives it."""
    from bot.observability import log_setup

    salt = None
    if settings.log_format == "json":
        configured = settings.log_salt.get_secret_value() if settings.log_salt else None
        salt = log_setup.deployment_salt(configured, settings.data_dir)
    log_setup.configure(level, settings.log_format, salt)


def _load_settings() -> Settings:
    try:
        return load_settings()
    except UnicodeDecodeError as exc:  # the only file read: .env in the working directory
        raise CliError(f"cannot read .env: it is not UTF-8 text ({exc.reason})") from None


def _database(settings: Settings | None) -> str:
    if settings is None:
        return "the database"
    try:
        url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the database"
    return f"the database {url}"


if __name__ == "__main__":
    sys.exit(main())
