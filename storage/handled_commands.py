"""Commands already handled, by platform message id: a platform may deliver one message twice
(a bot restarted before acknowledging it, a webhook retried), and a command must be answered
once, like a text (whose stored row carries its id)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from storage.dialects import upsert_insert
from storage.tables import HandledCommand, Platform, utcnow


def claim_command(
    session: Session, platform: Platform | str, chat_external_id: str | int, external_id: str | int
) -> bool:
    """Record that this command is being handled; False when it was before. One INSERT ... ON
    CONFLICT DO NOTHING, so of two processes given the same command at once exactly one wins."""
    inserted = session.execute(
        upsert_insert(session, HandledCommand)
        .values(
            platform=Platform(platform).value,
            chat_external_id=str(chat_external_id),
            external_id=str(external_id),
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["platform", "chat_external_id", "external_id"])
        .returning(HandledCommand.id)
    ).scalar()
    return inserted is not None
