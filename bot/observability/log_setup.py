"""The one place logging is set up: the `chatbot` command and the retraining worker and launcher
call `configure()` once, at start. (The worker and launcher write text: their output is a scratch
file of the run, whose last lines become the run's error message.)

`text` (the default) is readable lines; `json` one JSON object per line (`log_format`). The salt
of the chat hashes in JSON lines is `CHATBOT_LOG_SALT` when set (set the same one on every
replica, so that one chat has one hash everywhere); otherwise one is generated on first use and
stored in `DATA_DIR/log-salt` (readable by the owner only), so the hashes stay the same across
restarts of one deployment.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Literal

from bot.observability.log_format import TEXT_FORMAT, JsonFormatter

LogFormat = Literal["text", "json"]
SALT_FILE = "log-salt"


def configure(level: int, log_format: LogFormat = "text", salt: bytes | None = None) -> None:
    """A handler on the root logger writing `log_format` lines to stderr. Like `basicConfig`,
    nothing changes when the root logger has handlers already (pytest's, an embedding app's)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format, salt))
    root.addHandler(handler)
    root.setLevel(level)
    if log_format == "json":
        logging.captureWarnings(True)  # a library's warning becomes a JSON line too


def formatter(log_format: LogFormat, salt: bytes | None = None) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(salt if salt is not None else secrets.token_bytes(16))
    return logging.Formatter(TEXT_FORMAT)


def deployment_salt(configured: str | None, data_dir: Path) -> bytes:
    """The configured salt, or the one stored in `data_dir` (made on first use)."""
    if configured:
        return configured.encode()
    path = data_dir / SALT_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    salt = secrets.token_bytes(16)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(salt.hex() + "\n")
    except OSError:  # a read-only data directory: hashes hold for this process only
        pass
    return salt
