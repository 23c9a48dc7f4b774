"""Command claims: a message's command is claimed once; the update that claimed it may come back
(its process died before answering) and is handled again unless its answer is queued; any other
update carrying the same message is a redelivery. On SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from storage import outbox
from storage.database import Database
from storage.handled_commands import CommandClaim, claim_command
from storage.outbox import OutgoingMessage


def _claim(db: Database, message_id: int, **kw: Any) -> CommandClaim:
    return db.transact(claim_command, "telegram", 101, message_id, **kw)


def test_the_claiming_update_is_handled_again_until_its_answer_is_queued(
    database: Database,
) -> None:
    answer = "update:7001:0"
    assert _claim(database, 5, update_id=7001, answer_key=answer) is CommandClaim.NEW
    # The process died before answering: its update comes again, after a restart or elsewhere.
    assert _claim(database, 5, update_id=7001, answer_key=answer) is CommandClaim.RESUMED
    assert _claim(database, 5, update_id=7001, answer_key=answer) is CommandClaim.RESUMED
    # Another update carrying the same message (a duplicate post) stays a redelivery.
    assert _claim(database, 5, update_id=7002, answer_key="update:7002:0") is (
        CommandClaim.DUPLICATE
    )
    assert _claim(database, 5) is CommandClaim.DUPLICATE  # an update not known

    database.transact(outbox.enqueue, OutgoingMessage("telegram", 101, "Hi", dedupe_key=answer))
    assert _claim(database, 5, update_id=7001, answer_key=answer) is CommandClaim.ANSWERED
    assert _claim(database, 5, update_id=7001) is CommandClaim.RESUMED  # no key: cannot tell


def test_a_claim_without_an_update_is_a_redelivery_for_every_update(database: Database) -> None:
    """As every claim made before revision 0007 is."""
    assert _claim(database, 6) is CommandClaim.NEW
    assert _claim(database, 6, update_id=7003) is CommandClaim.DUPLICATE
    assert _claim(database, 6) is CommandClaim.DUPLICATE
