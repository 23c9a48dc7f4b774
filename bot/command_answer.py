"""A command's answer, queued in the outbox in the transaction that makes the command's change.

A command whose process died after claiming it is run again by the process that takes its update
over, unless its answer is queued by then (`storage.handled_commands`). A change that is not
idempotent (a taught pair, a rollback) therefore commits together with its answer: either both
are there, and the command is not run again (the outbox sends the answer), or neither is, and
running it again makes the change once. Two runs at once (a process that lost its lease in a long
database outage and the one that took the update over) queue it under the same key: the second
finds it queued and its change is rolled back (`AnsweredBefore`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

from storage import outbox
from storage.outbox import OutgoingMessage

R = TypeVar("R")


@dataclass(frozen=True)
class CommandAnswer(Generic[R]):
    """Where the answer goes (`message`, as the front end addresses and keys it) and how its
    text is made from the command's result."""

    message: OutgoingMessage
    text: Callable[[R], str]

    def queue(self, session: Session, result: R) -> None:
        """Queue the answer to `result`; `AnsweredBefore` if its key was queued before."""
        queued = outbox.enqueue(session, replace(self.message, text=self.text(result)))
        if queued is None:
            raise AnsweredBefore(self.message.dedupe_key)


class AnsweredBefore(Exception):
    """The command's answer was queued before, by another run of it: this run changes nothing."""
