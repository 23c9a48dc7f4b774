"""Handled updates and sent messages are kept a while, then deleted.

A handled update's row (its payload is already gone: see `storage.inbox.finish`) only serves to
recognise a redelivery, which Telegram makes within a day; a sent message's row to see what was
sent when. Both are deleted `keep_days` after they arrived, once at start and then hourly, by
every replica (deleting what another already deleted is harmless).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from bot.telegram.outage import OutageWatch
from storage import inbox, outbox
from storage.database import Database
from storage.faults import is_transient
from storage.tables import utcnow

log = logging.getLogger(__name__)

EVERY_SECONDS = 3600.0


def prune(session: Session, before: datetime) -> tuple[int, int]:
    """Delete finished inbox updates and outbox messages from before `before`."""
    return inbox.prune(session, before), outbox.prune(session, before)


async def prune_periodically(
    db: Database, keep_days: float, watch: OutageWatch, every_seconds: float = EVERY_SECONDS
) -> None:
    """Run until cancelled."""
    while True:
        try:
            updates, messages = await db.run(prune, utcnow() - timedelta(days=keep_days))
        except Exception as exc:
            if is_transient(exc):
                watch.failed(exc)
            else:
                log.exception("pruning the inbox and the outbox failed")
        else:
            if updates or messages:
                log.info("pruned %d handled updates and %d sent messages", updates, messages)
        await asyncio.sleep(every_seconds)
