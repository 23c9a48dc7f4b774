"""Tell the admins on Telegram how a retraining ended, from any process.

A plain Bot API `sendMessage` per admin over HTTP (synchronous: it runs in the scheduler's worker
thread, not on an event loop), so `chatbot scheduler` can report without running the bot. Without
a token or admins it does nothing; a failure to send is logged (never with the token in it) and
never fails the job.
"""

from __future__ import annotations

import logging

import httpx

from config import TelegramSettings

log = logging.getLogger(__name__)


def notify_admins(settings: TelegramSettings, text: str, *, timeout: float = 10.0) -> int:
    """Send `text` to every admin; returns how many messages Telegram accepted."""
    if settings.token is None or not settings.admin_ids:
        return 0
    url = f"{settings.base_url.rstrip('/')}{settings.token.get_secret_value()}/sendMessage"
    sent = 0
    with httpx.Client(timeout=timeout) as client:
        for admin_id in settings.admin_ids:
            try:
                response = client.post(url, json={"chat_id": admin_id, "text": text[:4096]})
                if response.status_code == 200:
                    sent += 1
                else:
                    log.warning(
                        "could not tell admin %s about the retraining: HTTP %s",
                        admin_id,
                        response.status_code,
                    )
            except httpx.HTTPError as exc:
                log.warning(
                    "could not tell admin %s about the retraining: %s", admin_id, type(exc).__name__
                )
    return sent
