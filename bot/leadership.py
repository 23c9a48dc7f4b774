"""Leadership: of the processes that may run the singleton duties (the retraining schedules,
retention), exactly one does, and another takes over when it dies.

A `Leadership` campaigns in a thread for a `storage.leader_lock` lock: every `poll_seconds` a
standby tries to take it; the leader checks that it still holds it. Taking it calls
`on_elected` (start the duties); losing it (its database session ended: the server restarted,
the network failed) calls `on_deposed` (stop starting new work) and the process goes back to
standing by. A leader that dies loses the lock with its database session, so a standby leads
within `poll_seconds` of the death (plus, for a host that vanished, the server's keepalive
timeout). `stop()` deposes and releases at once, so a clean shutdown hands over without waiting.

The lock decides who starts work; the work itself is fenced by the database too (a schedule's
firing is claimed once, a training run holds a unique running row), so the moment in which a
deposed leader has not yet noticed cannot run anything twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.observability import metrics
from storage.leader_lock import LeaderLock

log = logging.getLogger(__name__)


class Leadership:
    def __init__(
        self,
        lock: LeaderLock,
        *,
        on_elected: Callable[[], object],
        on_deposed: Callable[[], object],
        poll_seconds: float,
        role: str = "leader",
    ) -> None:
        self.lock = lock
        self.on_elected, self.on_deposed = on_elected, on_deposed
        self.poll_seconds = poll_seconds
        self.role = role
        self.elected = threading.Event()  # set while this process leads (tests, status)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable = False
        self._standing_by = False

    @property
    def leading(self) -> bool:
        return self.elected.is_set()

    def start(self) -> None:
        """Campaign in the background: the first attempt is made at once."""
        if self._thread is not None:
            raise RuntimeError("this leadership is already campaigning")
        metrics.leading(self.role, False)  # standing by until elected
        self._thread = threading.Thread(target=self._campaign, name=f"{self.role}-campaign")
        self._thread.start()

    def stop(self) -> None:
        """Stop campaigning; a leader steps down (`on_deposed`) and releases the lock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.leading:
            self._step_down("stopping")
        self.lock.release()

    def _campaign(self) -> None:
        while not self._stop.is_set():
            if self.leading:
                if not self._still_held():
                    self._step_down("lost the lock (its database session ended)")
            else:
                self._try_to_lead()
            self._stop.wait(self.poll_seconds)

    def _try_to_lead(self) -> None:
        try:
            acquired = self.lock.try_acquire()
        except Exception as exc:
            if not self._unreachable:
                log.warning("%s: cannot take the %s (%s)", self.role, self.lock.description, exc)
            self._unreachable = True
            return
        if self._unreachable:
            log.info("%s: the %s can be reached again", self.role, self.lock.description)
            self._unreachable = False
        if not acquired:
            if not self._standing_by:
                log.info("%s: standing by (another process leads)", self.role)
            self._standing_by = True
            return
        log.info("%s: leading (holding the %s)", self.role, self.lock.description)
        self._standing_by = False
        metrics.leading(self.role, True)
        self.elected.set()
        try:
            self.on_elected()
        except Exception:
            log.exception("%s: could not start leading; giving the lock back", self.role)
            self._step_down("it could not start")
            self._stop.wait(self.poll_seconds)  # not at once again: let another process try

    def _still_held(self) -> bool:
        try:
            return self.lock.held()
        except Exception:
            return False

    def _step_down(self, why: str) -> None:
        self.elected.clear()
        metrics.leading(self.role, False)
        if why == "stopping":
            log.info("%s: standing down (stopping)", self.role)
        else:
            log.warning("%s: standing down: %s", self.role, why)
        try:
            self.on_deposed()
        except Exception:
            log.exception("%s: stepping down failed", self.role)
        self.lock.release()
