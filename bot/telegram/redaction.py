"""Keep secrets (the bot token, the webhook secret) out of every log line.

The token is part of every Bot API URL, and several libraries log URLs: httpx at INFO
("HTTP Request: POST https://api.telegram.org/bot<token>/getUpdates"), PTB at DEBUG. So httpx's
request log is turned down to WARNING, and a filter on every root handler replaces the secrets
wherever they appear: in the message, its arguments, and a formatted traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote

REPLACEMENT = "[REDACTED]"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # As written and percent-encoded (a token's ":" in a query string); longest first, so a
        # secret containing another is replaced whole.
        variants = {v for s in secrets if s for v in (s, quote(s, safe=""))}
        self.secrets = sorted(variants, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REPLACEMENT)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install(secrets: Iterable[str], logger: logging.Logger | None = None) -> RedactSecrets:
    """Filter every handler of `logger` (default: root) and quiet httpx's per-request log."""
    redactor = RedactSecrets(secrets)
    for handler in (logger or logging.getLogger()).handlers:
        handler.addFilter(redactor)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redactor
