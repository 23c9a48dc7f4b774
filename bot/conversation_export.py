"""Conversation export: the one use case behind `chatbot export`, Telegram's /export and the
console's /export.

What is selected is storage's (`storage.exports.ConversationQuery`: a user, a chat, a time);
the file formats are `bot.export_formats`'. This module runs the query in one read session
and streams its rows into a file, so a big export never sits in memory as rows. A file on disk
is written next to its destination and renamed over it when complete: an export that fails
leaves no half file and keeps the old one. It is readable by its owner only (mode 0600), since
it holds people's messages.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session

from bot.export_formats import WRITERS, ExportFormat
from storage.database import Database
from storage.exports import ConversationQuery, conversation_subject_known, iter_conversations
from storage.tables import utcnow

# Telegram takes documents up to 50 MB from bots (FileSizeLimit.FILESIZE_UPLOAD); an export
# spills from memory to a temporary file beyond this much.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
_IN_MEMORY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ExportResult:
    messages: int
    known: bool  # False: the user or chat asked for is not stored (never seen, or forgotten)


@dataclass(frozen=True)
class HistoryFile:
    """A person's own history, ready to send as a document."""

    content: bytes
    filename: str
    messages: int


@dataclass(frozen=True)
class HistoryTooLarge:
    size: int  # bytes


class ConversationExporter:
    def __init__(self, db: Database) -> None:
        self.db = db

    def write(self, query: ConversationQuery, fmt: ExportFormat, out: IO[str]) -> ExportResult:
        """Write what `query` selects to `out` (a text stream, UTF-8, opened with newline="")."""
        return self.db.read(_write, query, fmt, out)

    def write_file(self, query: ConversationQuery, fmt: ExportFormat, path: Path) -> ExportResult:
        """Write what `query` selects to the file `path` (created or replaced when complete)."""
        with tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            newline="",
            dir=path.parent,
            prefix=f".{path.name}.",
            suffix=".part",
            delete=False,
        ) as out:
            try:
                result = self.write(query, fmt, out)
                out.flush()
                os.fsync(out.fileno())  # on disk before it takes the place of the old file
            except BaseException:
                out.close()
                os.unlink(out.name)
                raise
        os.replace(out.name, path)
        return result

    async def user_history(
        self, platform: str, user_id: str | int, fmt: ExportFormat
    ) -> HistoryFile | HistoryTooLarge | None:
        """A person's messages in every chat and the bot's replies to them, as a file; None when
        nothing is stored about them (never seen, or forgotten)."""
        query = ConversationQuery(platform=platform, user=str(user_id))
        return await self.db.run_read(_history_file, query, fmt)

    async def save_user_history(
        self, platform: str, user_id: str | int, fmt: ExportFormat, directory: Path
    ) -> tuple[Path, int] | None:
        """A person's history (as `user_history`) as a new file in `directory` (made if
        missing): its path and how many messages it holds; None, and no file, when nothing is
        stored about them."""
        return await asyncio.to_thread(self._save_user_history, platform, user_id, fmt, directory)

    def _save_user_history(
        self, platform: str, user_id: str | int, fmt: ExportFormat, directory: Path
    ) -> tuple[Path, int] | None:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / history_filename(platform, user_id, fmt, utcnow())
        query = ConversationQuery(platform=platform, user=str(user_id))
        result = self.write_file(query, fmt, path)
        if result.messages == 0:
            path.unlink()
            return None
        return path, result.messages


def history_filename(platform: str, user_id: str | int, fmt: ExportFormat, at: datetime) -> str:
    """e.g. `history-telegram-101-20261126T173629Z.jsonl` (only safe characters of the id)."""
    return f"{_history_prefix(platform, user_id)}{at:%Y%m%dT%H%M%SZ}.{fmt.value}"


def delete_saved_histories(platform: str, user_id: str | int, directory: Path) -> int:
    """Remove the history files saved for a person in `directory` (a /forget must not leave
    their messages on disk); how many there were."""
    if not directory.is_dir():
        return 0
    # The whole name, so that person "a" never takes the files of person "a-2".
    name = re.compile(re.escape(_history_prefix(platform, user_id)) + r"\d{8}T\d{6}Z\.\w+")
    removed = 0
    for path in directory.iterdir():
        if name.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def _history_prefix(platform: str, user_id: str | int) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", str(user_id))
    return f"history-{platform}-{safe}-"


def _write(
    session: Session, query: ConversationQuery, fmt: ExportFormat, out: IO[str]
) -> ExportResult:
    known = conversation_subject_known(session, query)
    return ExportResult(WRITERS[fmt](iter_conversations(session, query), out), known)


def _history_file(
    session: Session, query: ConversationQuery, fmt: ExportFormat
) -> HistoryFile | HistoryTooLarge | None:
    # An unknown person needs no lookup of their own: their export holds no message.
    with tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY_BYTES) as spool:
        text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
        try:
            messages = WRITERS[fmt](iter_conversations(session, query), text)
            text.flush()
        finally:
            text.detach()  # the spool stays open: it is read below
        size = spool.tell()
        if messages == 0:
            return None
        if size > MAX_UPLOAD_BYTES:
            return HistoryTooLarge(size)
        spool.seek(0)
        content = spool.read()
    name = history_filename(query.platform, str(query.user), fmt, utcnow())
    return HistoryFile(content, name, messages)
