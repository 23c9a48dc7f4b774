"""Commands already handled, by platform message id: a platform may deliver one message twice
(a bot restarted before acknowledging it, a webhook retried), and a command must be answered
once, like a text (whose stored row carries its id).

A claim is committed before the command's handler runs, so a process may die between the two.
The claim therefore names the update that made it: the same update handled again (its inbox row
taken over after a crash) is the unfinished first try, not a redelivery, and is run again unless
its answer is already queued in the outbox (then the outbox delivers it and nothing runs twice).
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from storage.dialects import upsert_insert
from storage.tables import HandledCommand, OutboxMessage, Platform, utcnow


class CommandClaim(StrEnum):
    """What `claim_command` found; NEW and RESUMED are to be handled."""

    NEW = "new"  # the first time this message is seen
    RESUMED = "resumed"  # claimed by this same update before, which never queued its answer
    ANSWERED = "answered"  # claimed by this same update before, whose answer is queued
    DUPLICATE = "duplicate"  # claimed by another update (or one not known): a redelivery

    @property
    def to_handle(self) -> bool:
        return self in (CommandClaim.NEW, CommandClaim.RESUMED)


def claim_command(
    session: Session,
    platform: Platform | str,
    chat_external_id: str | int,
    external_id: str | int,
    *,
    update_id: int | None = None,
    answer_key: str | None = None,
) -> CommandClaim:
    """Claim this command for `update_id`, the platform update carrying it. One INSERT ... ON
    CONFLICT DO NOTHING, so of two processes given the same command at once exactly one wins.
    A claim that stands is RESUMED only by the update that made it, and only while the outbox
    holds no message keyed `answer_key` (the first message its handler queues)."""
    key = {
        "platform": Platform(platform).value,
        "chat_external_id": str(chat_external_id),
        "external_id": str(external_id),
    }
    inserted = session.execute(
        upsert_insert(session, HandledCommand)
        .values(**key, update_id=update_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=list(key))
        .returning(HandledCommand.id)
    ).scalar()
    if inserted is not None:
        return CommandClaim.NEW
    claimed_by = session.execute(
        select(HandledCommand.update_id).filter_by(**key)
    ).scalar_one_or_none()
    if update_id is None or claimed_by != update_id:
        return CommandClaim.DUPLICATE
    if (
        answer_key is not None
        and session.execute(
            select(exists().where(OutboxMessage.dedupe_key == answer_key))
        ).scalar_one()
    ):
        return CommandClaim.ANSWERED
    return CommandClaim.RESUMED
