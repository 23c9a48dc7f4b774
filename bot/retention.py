"""Retention in practice: `storage.retention_days` (off by default) applied by the processes
that run for long (the Telegram bot) right after they start and then every few hours, and on
demand by `chatbot db prune` (for a cron job where no bot runs)."""

from __future__ import annotations

import asyncio
import logging

from storage.database import Database
from storage.retention import apply_retention

log = logging.getLogger(__name__)

PRUNE_EVERY_SECONDS = 6 * 3600


def prune(db: Database, retention_days: int | None) -> int:
    """Delete the messages older than `retention_days` (None: keep everything); how many."""
    deleted = db.transact(apply_retention, retention_days)
    if deleted:
        log.info("retention: deleted %d messages older than %s days", deleted, retention_days)
    return deleted


async def prune_periodically(
    db: Database, retention_days: int | None, every_seconds: float = PRUNE_EVERY_SECONDS
) -> None:
    """Run until cancelled; a failed pass is logged and tried again at the next interval."""
    if retention_days is None:
        return
    while True:
        try:
            await asyncio.to_thread(prune, db, retention_days)
        except Exception:
            log.exception("retention pass failed; trying again in %.0f s", every_seconds)
        await asyncio.sleep(every_seconds)
