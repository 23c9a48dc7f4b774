"""Tell the admins on Telegram how a retraining ended, from any process.

A plain Bot API `sendMessage` per admin over HTTP (synchronous: it runs in the scheduler's worker
thread, not on an event loop), so `chatbot scheduler` can report without running the bot. Without
a token or admins it does nothing; a failure to send is logged (never with the URL, which holds
the token) and never fails the job.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from config import TelegramSettings

log = logging.getLogger(__name__)


def notify_admins(settings: TelegramSettings, text: str, *, timeout: float = 10.0) -> int:
    """Send `text` to every admin; returns how many messages Telegram accepted."""
    if settings.token is None or not settings.admin_ids:
        return 0
    url = f"{settings.base_url.rstrip('/')}{settings.token.get_secret_value()}/sendMessage"
    sent = 0
    for admin_id in settings.admin_ids:
        request = urllib.request.Request(
            url,
            data=json.dumps({"chat_id": admin_id, "text": text[:4096]}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout):
                sent += 1
        except urllib.error.HTTPError as exc:
            log.warning("could not tell admin %s about the retraining: HTTP %s", admin_id, exc.code)
        except OSError as exc:  # URLError, timeouts, refused connections
            reason = getattr(exc, "reason", exc)
            log.warning(
                "could not tell admin %s about the retraining: %s", admin_id, type(reason).__name__
            )
    return sent
