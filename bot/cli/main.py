"""Entry point of `chatbot`: one argparse subcommand per module, user errors -> one line, exit 2."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from pydantic import ValidationError
from pydantic_settings import SettingsError

from bot.cli import chat, db, model_admin, model_commands, retrain, schedule, telegram
from bot.cli.errors import CliError, one_line
from config import load_settings
from nlp.errors import NlpError
from storage.errors import StorageError

# Each module exposes `register(subparsers)`; the parser it adds sets `run(args, settings) -> int`.
COMMAND_MODULES: tuple[ModuleType, ...] = (
    model_commands,
    model_admin,
    chat,
    db,
    telegram,
    retrain,
    schedule,
)
USER_ERRORS = (CliError, NlpError, StorageError)
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is 2 as well
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
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings()
        return int(args.run(args, settings) or 0)
    except USER_ERRORS as exc:
        print(f"chatbot {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValidationError, SettingsError) as exc:  # SettingsError: e.g. a renamed variable
        print(f"chatbot: invalid setting {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
