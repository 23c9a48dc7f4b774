"""Counts for the admin commands: how many people wrote, messages, replies, ratings, latency.

"Users" and "chats" are those with at least one message in the period (a user who only pressed
👍 is not counted as having written). Every count is one aggregate query over indexed columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from storage.tables import Chat, ChatKind, Feedback, Message, Platform


@dataclass(frozen=True)
class Counts:
    users: int  # distinct people who wrote
    chats: int
    group_chats: int
    user_messages: int
    bot_replies: int
    feedback_up: int
    feedback_down: int
    mean_latency_ms: float | None  # of the bot replies that recorded one

    @property
    def messages(self) -> int:
        return self.user_messages + self.bot_replies


def counts(
    session: Session, *, platform: Platform | str | None = None, since: datetime | None = None
) -> Counts:
    """Counts over every message (or those of `platform`, created at or after `since`)."""
    conditions: list[ColumnElement[bool]] = []
    if platform is not None:
        conditions.append(Chat.platform == Platform(platform).value)
    message_conditions = [*conditions]
    if since is not None:
        message_conditions.append(Message.created_at >= since)
    row = session.execute(
        select(
            func.count(func.distinct(Message.user_id)),
            func.count(func.distinct(Message.chat_id)),
            func.count(func.distinct(case((Chat.kind == ChatKind.GROUP.value, Chat.id)))),
            func.coalesce(func.sum(case((Message.from_bot.is_(False), 1), else_=0)), 0),
            func.coalesce(func.sum(case((Message.from_bot.is_(True), 1), else_=0)), 0),
            func.avg(case((Message.from_bot.is_(True), Message.latency_ms))),
        )
        .select_from(Message)
        .join(Chat, Chat.id == Message.chat_id)
        .where(*message_conditions)
    ).one()
    feedback_conditions = [*conditions]
    if since is not None:
        feedback_conditions.append(Feedback.updated_at >= since)
    up, down = session.execute(
        select(
            func.coalesce(func.sum(case((Feedback.value > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((Feedback.value < 0, 1), else_=0)), 0),
        )
        .select_from(Feedback)
        .join(Message, Message.id == Feedback.message_id)
        .join(Chat, Chat.id == Message.chat_id)
        .where(*feedback_conditions)
    ).one()
    users, chats, groups, user_messages, bot_replies, latency = row
    return Counts(
        users=int(users),
        chats=int(chats),
        group_chats=int(groups),
        user_messages=int(user_messages),
        bot_replies=int(bot_replies),
        feedback_up=int(up),
        feedback_down=int(down),
        mean_latency_ms=None if latency is None else float(latency),
    )
