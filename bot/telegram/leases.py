"""Keeping the rows a process works on (inbox updates, outbox messages) its own: their leases are
renewed every third of the lease time. A process that dies stops renewing, and once its leases
run out any process (another replica, or this one restarted) claims the rows again. Nothing about
who holds what lives only in memory: the database says it, for every replica to read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection

from sqlalchemy.orm import Session

from bot.telegram.outage import OutageWatch
from storage.database import Database
from storage.faults import describe, is_transient

log = logging.getLogger(__name__)

# storage.inbox.renew / storage.outbox.renew: (session, worker, ids, *, lease_seconds) -> renewed
Renew = Callable[..., int]
Release = Callable[[Session, str, Collection[int]], int]


class LeaseKeeper:
    def __init__(
        self,
        db: Database,
        worker: str,
        lease_seconds: float,
        watch: OutageWatch,
        *,
        renew: Renew,
        release: Release,
    ) -> None:
        self.db = db
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.watch = watch
        self._renew = renew
        self._release = release
        self.held: set[int] = set()

    async def run(self) -> None:
        """Renew until cancelled."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            await self.renew_now()

    async def renew_now(self) -> int:
        """Renew every lease held now; how many were still ours (0 when the database is down)."""
        ids = list(self.held)
        if not ids:
            return 0
        try:
            renewed = await self.db.run(
                self._renew, self.worker, ids, lease_seconds=self.lease_seconds
            )
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.watch.failed(exc)
            return 0
        self.watch.answered()
        return renewed

    async def still_mine(self, row_id: int) -> bool:
        """Renew one lease; False when another process holds the row now (ours ran out during
        an outage and it was claimed again). Raises the database's error if it does not answer."""
        renewed: int = await self.db.run(
            self._renew, self.worker, [row_id], lease_seconds=self.lease_seconds
        )
        return renewed == 1

    async def release_all(self) -> None:
        """Give the leases held now back (a clean stop): the rows are claimable at once."""
        ids = list(self.held)
        if not ids:
            return
        try:
            await self.db.run(self._release, self.worker, ids)
        except Exception as exc:  # they run out by themselves
            if not is_transient(exc):
                raise
            log.info(
                "could not give %d leases back (%s); they run out by themselves",
                len(ids),
                describe(exc),
            )
        self.held.difference_update(ids)
