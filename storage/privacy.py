"""A user's control over their data: opting out of training, and being forgotten entirely.

Forgetting deletes, in one transaction (the caller's):
- the feedback the user gave;
- the bot's replies to the user's messages (a reply would reveal what it answered), and with them
  any feedback *other* users gave on those replies — counted separately, because it is the one
  place where another user's rows go too;
- the user's messages (other users' messages that replied to one of them keep their text; only
  their `reply_to_id` link becomes NULL);
- the messages the user taught the bot, and the user row.
Nothing else of anyone else is touched. The deletes are explicit (not left to ON DELETE CASCADE)
so that each count is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Delete, delete, select, update
from sqlalchemy.orm import Session

from storage.database import execute_dml
from storage.errors import NotFoundError
from storage.tables import Feedback, Message, TaughtPair, User


@dataclass(frozen=True)
class ForgetResult:
    """How many rows `forget_user` deleted, by kind."""

    messages: int
    bot_replies: int
    feedback: int
    feedback_on_bot_replies: int
    taught_pairs: int
    users: int

    @property
    def total(self) -> int:
        return (
            self.messages
            + self.bot_replies
            + self.feedback
            + self.feedback_on_bot_replies
            + self.taught_pairs
            + self.users
        )


def forget_user(session: Session, user_id: int) -> ForgetResult:
    """Delete everything of `user_id` (see the module docstring); zeros if there is no such user."""
    their_messages = select(Message.id).where(Message.user_id == user_id)
    replies_to_them = select(Message.id).where(
        Message.from_bot.is_(True), Message.reply_to_id.in_(their_messages)
    )

    feedback = _deleted(session, delete(Feedback).where(Feedback.user_id == user_id))
    feedback_on_replies = _deleted(
        session, delete(Feedback).where(Feedback.message_id.in_(replies_to_them))
    )
    bot_replies = _deleted(session, delete(Message).where(Message.id.in_(replies_to_them)))
    messages = _deleted(session, delete(Message).where(Message.user_id == user_id))
    taught = _deleted(session, delete(TaughtPair).where(TaughtPair.user_id == user_id))
    users = _deleted(session, delete(User).where(User.id == user_id))
    return ForgetResult(
        messages=messages,
        bot_replies=bot_replies,
        feedback=feedback,
        feedback_on_bot_replies=feedback_on_replies,
        taught_pairs=taught,
        users=users,
    )


def _deleted(session: Session, statement: Delete) -> int:
    # No ORM session synchronisation: nothing forgotten is loaded in this session.
    return execute_dml(session, statement.execution_options(synchronize_session=False))


def set_opted_out(session: Session, user_id: int, opted_out: bool = True) -> None:
    """Keep (or stop keeping) a user's messages out of training exports."""
    updated = execute_dml(
        session, update(User).where(User.id == user_id).values(opted_out=opted_out)
    )
    if updated == 0:
        raise NotFoundError(f"no user with id {user_id}")


def is_opted_out(session: Session, user_id: int) -> bool:
    value = session.execute(select(User.opted_out).where(User.id == user_id)).scalar()
    if value is None:
        raise NotFoundError(f"no user with id {user_id}")
    return value
