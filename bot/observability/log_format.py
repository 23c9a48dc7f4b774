"""One JSON object per log line (`CHATBOT_LOG_FORMAT=json`), for log shippers.

Each line has `time` (UTC, ISO 8601, milliseconds), `level`, `logger` and `message`, and where
known: `update_id`, `chat` (a salted hash of the chat id: lines of one chat can be followed
without the log naming the person), `model_version` and `latency_s` (the reply's generation and
storage), and `exception` (the traceback, one string). They come from the update being handled
(`update_context.CURRENT`), or from a call's `extra=` (`update_id`, `chat_id`, `model_version`,
`latency_s`). The message is formatted as the text format formats it, so the secrets' redaction
(`bot.telegram.redaction`, a filter on the handler that runs before any formatter) holds in both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import UTC, datetime
from typing import Any

from bot.observability.update_context import CURRENT

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def chat_hash(salt: bytes, chat_key: object) -> str:
    """A short keyed hash of a chat id: the same chat, the same hash, under one salt."""
    return hmac.new(salt, str(chat_key).encode(), hashlib.sha256).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    def __init__(self, salt: bytes) -> None:
        super().__init__()
        self.salt = salt

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(self._known_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)

    def _known_fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        update = CURRENT.get()
        if update is not None:
            fields["update_id"] = update.update_id
            if update.chat_key is not None:
                fields["chat"] = chat_hash(self.salt, update.chat_key)
            if update.model_version is not None:
                fields["model_version"] = update.model_version
            if update.latency_seconds is not None:
                fields["latency_s"] = round(update.latency_seconds, 4)
        given = record.__dict__
        if "update_id" in given:
            fields["update_id"] = given["update_id"]
        if given.get("chat_id") is not None:
            fields["chat"] = chat_hash(self.salt, given["chat_id"])
        if "model_version" in given:
            fields["model_version"] = given["model_version"]
        if "latency_s" in given:
            fields["latency_s"] = given["latency_s"]
        return fields
