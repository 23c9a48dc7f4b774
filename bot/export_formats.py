"""The conversation export's file formats: JSON Lines and CSV, with the same fields in both.

The fields are a stable, documented interface (README, `chatbot export --help`): a reader may
rely on their names and meaning; new fields are only ever added at the end. Every file is UTF-8
without a byte order mark.

- JSONL: one JSON object per line, each line ending in `\\n`; a missing value is `null`, numbers
  are numbers. U+2028 and U+2029 are escaped, so no line-splitting reader breaks a message.
- CSV (RFC 4180): a header line with the field names, then one line per message, lines ending
  in `\\r\\n`; a value holding a comma, a quote or a line break is quoted (quotes doubled); a
  missing value is empty.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import IO, Any

from storage.exports import ConversationRow


class ExportFormat(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"


# name -> what it means (the README and `--help` show this table).
FIELDS: dict[str, str] = {
    "message_id": "the message's id in this database (a reply names it in reply_to_message_id)",
    "platform": "telegram or console",
    "chat_id": "the chat's id on its platform (Telegram: negative for groups)",
    "chat_kind": "private or group",
    "user_id": "the sender's id on the platform; empty for the bot",
    "user_name": "the sender's display name as last seen; empty for the bot",
    "role": "user (a person wrote it) or bot (the bot's reply)",
    "time": "when it was stored, ISO 8601 in UTC (e.g. 2026-11-26T17:36:29.123456+00:00)",
    "text": "the message text",
    "reply_to_message_id": "message_id of the message it answers, if any",
    "platform_message_id": "the platform's own id of the message, if known",
    "model_version": "bot replies: the model version that wrote it (empty: a fixed answer)",
    "feedback_up": "bot replies: how many people rated it 👍",
    "feedback_down": "bot replies: how many people rated it 👎",
}


def record(row: ConversationRow) -> dict[str, Any]:
    """`row` as the export's fields, in their documented order (JSON-ready values)."""
    return {
        "message_id": row.message_id,
        "platform": row.platform,
        "chat_id": row.chat_id,
        "chat_kind": row.chat_kind,
        "user_id": row.user_id,
        "user_name": row.user_name,
        "role": row.role,
        "time": row.time.isoformat(),
        "text": row.text,
        "reply_to_message_id": row.reply_to_message_id,
        "platform_message_id": row.platform_message_id,
        "model_version": row.model_version,
        "feedback_up": row.feedback_up,
        "feedback_down": row.feedback_down,
    }


def write_jsonl(rows: Iterable[ConversationRow], out: IO[str]) -> int:
    """One JSON object per line; returns how many."""
    count = 0
    for row in rows:
        line = json.dumps(record(row), ensure_ascii=False)
        out.write(line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029") + "\n")
        count += 1
    return count


def write_csv(rows: Iterable[ConversationRow], out: IO[str]) -> int:
    """A header, then one line per row; returns how many rows (the header not counted).
    `out` must be opened with `newline=""`, as the csv module asks, or line breaks inside a
    text would be translated."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(FIELDS)
    count = 0
    for row in rows:
        writer.writerow("" if value is None else value for value in record(row).values())
        count += 1
    return count


WRITERS: dict[ExportFormat, Callable[[Iterable[ConversationRow], IO[str]], int]] = {
    ExportFormat.JSONL: write_jsonl,
    ExportFormat.CSV: write_csv,
}
