"""`chatbot export (--user ID | --chat ID | --since DATE) [--format jsonl|csv] --out FILE`: stored
conversations as a file, for an operator answering a person's data request (or keeping records).

Every argument is checked before the database is opened: no selector, --user with --chat, a
date that is not one, an unknown format, an --out that cannot be written are one line and exit
2. A user or chat that is not stored (never seen, or forgotten with /forget) gives an empty file
(a CSV: its header only) and one line on stderr saying so, with exit 0: "nothing stored" is an
answer to a data request, not an error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.cli.errors import CliError
from bot.cli.outputs import check_file_output
from bot.export_formats import FIELDS, ExportFormat
from config import Settings
from storage.exports import ConversationQuery
from storage.tables import Platform

_EPILOG = (
    "--since combines with --user or --chat (that user's or chat's messages since DATE).\n"
    "\n"
    "Output: each chat's messages in the order they were written, in UTF-8. jsonl: one JSON\n"
    "object per line (missing values null). csv: a header line, RFC 4180 quoting, missing values\n"
    "empty. The fields, in this order:\n"
    + "\n".join(f"  {name:20} {meaning}" for name, meaning in FIELDS.items())
    + "\n\nA --user export holds that person's messages in every chat and the bot's replies to\n"
    "them (not other people's messages in shared groups). The file is readable by its owner\n"
    "only. A user or chat that is not stored (or was forgotten) gives an empty file, and says so."
)


def since_date(text: str) -> datetime:
    """An ISO 8601 date or date and time (`2026-11-01`, `2026-11-01T08:30`, `...+02:00`); one
    without a zone is UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a date like 2026-11-01 or 2026-11-01T08:30:00+00:00, not {text!r}"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export stored conversations (a user, a chat, or since a date) as JSONL or CSV",
        description="Export stored conversations as JSON Lines or CSV.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", metavar="ID", help="a user's id on the platform (Telegram: numeric)")
    who.add_argument("--chat", metavar="ID", help="a chat's id on the platform (groups: negative)")
    parser.add_argument(
        "--since",
        type=since_date,
        metavar="DATE",
        help="messages written at or after DATE (ISO 8601; UTC unless a zone is given)",
    )
    parser.add_argument(
        "--platform",
        choices=[p.value for p in Platform],
        default=Platform.TELEGRAM.value,
        help="where --user and --chat ids come from (default: telegram)",
    )
    parser.add_argument(
        "--format",
        choices=[f.value for f in ExportFormat],
        default=ExportFormat.JSONL.value,
        help="jsonl (default) or csv",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.user is None and args.chat is None and args.since is None:
        raise CliError("say what to export: --user ID, --chat ID or --since DATE")
    check_file_output(args.out)
    query = ConversationQuery(
        platform=args.platform, user=args.user, chat=args.chat, since=args.since
    )
    fmt = ExportFormat(args.format)

    from bot.conversation_export import ConversationExporter
    from storage import schema_revision
    from storage.database import Database

    db = Database.from_settings(settings)
    try:
        schema_revision.ensure_schema(db, settings.storage.auto_upgrade)
        result = ConversationExporter(db).write_file(query, fmt, args.out)
    finally:
        db.dispose()
    if not result.known:
        print(
            f"chatbot export: nothing stored for {_subject(query)} (never seen, or forgotten): "
            f"wrote an empty {args.out}",
            file=sys.stderr,
        )
    else:
        print(f"wrote {result.messages} messages to {args.out}")
    return 0


def _subject(query: ConversationQuery) -> str:
    parts = []
    if query.user is not None:
        parts.append(f"{query.platform} user {query.user}")
    if query.chat is not None:
        parts.append(f"{query.platform} chat {query.chat}")
    return " in ".join(parts)
