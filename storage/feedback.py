"""👍/👎 on bot messages: one vote per user and message; pressing again changes the vote."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import case, delete, func, select
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.dialects import upsert_insert
from storage.errors import InvalidFeedbackError, NotFoundError
from storage.tables import Feedback, Message, utcnow

UP = 1
DOWN = -1


@dataclass(frozen=True)
class FeedbackTally:
    up: int
    down: int

    @property
    def score(self) -> int:
        return self.up - self.down


def set_feedback(session: Session, message_id: int, user_id: int, value: int) -> None:
    """Record `user_id`'s vote (+1 or -1) on a bot message, replacing an earlier vote."""
    if value not in (UP, DOWN):
        raise InvalidFeedbackError(f"feedback must be +1 or -1, not {value!r}")
    from_bot = session.execute(select(Message.from_bot).where(Message.id == message_id)).scalar()
    if from_bot is None:
        raise NotFoundError(f"no message with id {message_id}")
    if not from_bot:
        raise InvalidFeedbackError(f"message {message_id} is not a bot message")
    now = utcnow()
    statement = upsert_insert(session, Feedback).values(
        message_id=message_id, user_id=user_id, value=value, created_at=now, updated_at=now
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["message_id", "user_id"],
            set_={"value": statement.excluded.value, "updated_at": statement.excluded.updated_at},
        )
    )


def get_feedback(session: Session, message_id: int, user_id: int) -> int | None:
    return session.execute(
        select(Feedback.value).where(Feedback.message_id == message_id, Feedback.user_id == user_id)
    ).scalar()


def remove_feedback(session: Session, message_id: int, user_id: int) -> bool:
    """Withdraw a vote; False if there was none."""
    deleted = execute_dml(
        session,
        delete(Feedback).where(Feedback.message_id == message_id, Feedback.user_id == user_id),
    )
    return deleted > 0


def feedback_tally(session: Session, message_id: int) -> FeedbackTally:
    up, down = session.execute(
        select(
            func.coalesce(func.sum(case((Feedback.value > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Feedback.value < 0, 1), else_=0)), 0),
        ).where(Feedback.message_id == message_id)
    ).one()
    return FeedbackTally(up=int(up), down=int(down))


def downvoted(session: Session, message_ids: Iterable[int]) -> set[int]:
    """Which of `message_ids` got at least one 👎 (whatever their 👍 count)."""
    ids = sorted(set(message_ids))
    found: set[int] = set()
    for start in range(0, len(ids), 900):  # well under every backend's parameter limit
        found.update(
            session.execute(
                select(Feedback.message_id)
                .where(Feedback.message_id.in_(ids[start : start + 900]), Feedback.value < 0)
                .distinct()
            ).scalars()
        )
    return found
