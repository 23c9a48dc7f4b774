"""Data leaving the database: a user's history as JSONL, and training pairs for retraining.

Training pairs are kept general (the retraining issue sets the rules through `PairFilter`): a
pair is a reply message and the message(s) it answers in the same chat. The answered message is
the one the reply explicitly replied to (Telegram's "reply to", our bot replies) or else the
message just before it; `context_turns` > 1 adds the messages before that, oldest first.
Nothing here masks PII: that is text processing, done by the caller before training.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal, TextIO

from sqlalchemy import ColumnElement, Row, false, func, or_, select, true
from sqlalchemy.orm import Session, aliased

from storage.errors import NotFoundError
from storage.tables import Chat, Feedback, Message, TaughtPair, User, utcnow
from storage.training_runs import RunInfo

_CHUNK = 900  # ids per IN (...) list, well under every backend's parameter limit


@dataclass(frozen=True)
class PairFilter:
    """Which consecutive turns make training pairs. Defaults: human replies and upvoted bot
    replies, nobody who opted out, no one answering themselves."""

    after_message_id: int | None = None  # replies with a larger id only (a run's watermark)
    until_message_id: int | None = None  # ... and not larger than this
    since: datetime | None = None  # replies created at or after this
    human_replies: bool = True  # a user's message answering the previous turn
    bot_replies: Literal["none", "upvoted", "not_downvoted", "all"] = "upvoted"
    min_score: int = 1  # net feedback an "upvoted" bot reply needs
    context_from: Literal["any", "human", "bot"] = "any"  # who wrote the answered message
    exclude_opted_out: bool = True  # drop pairs with any message by an opted-out user
    skip_same_sender: bool = True  # a user continuing their own message is not a reply
    max_gap: timedelta | None = None  # drop pairs whose turns are further apart in time
    platform: str | None = None
    context_turns: int = 1
    prefer_explicit_reply: bool = True  # answered message = reply_to when there is one


@dataclass(frozen=True)
class TrainingPair:
    """A context (oldest first; the last item is the answered text) and its reply."""

    context: tuple[str, ...]
    reply: str
    source: Literal["chat", "taught"]
    created_at: datetime
    chat_id: int | None = None
    reply_message_id: int | None = None
    context_message_ids: tuple[int, ...] = ()
    reply_from_bot: bool = False
    score: int = 0  # net feedback on the reply
    taught_pair_id: int | None = None

    @property
    def context_text(self) -> str:
        return self.context[-1]


@dataclass(frozen=True)
class PairExport:
    """New pairs since a run, and the watermarks to store with the run that trains on them."""

    chat_pairs: list[TrainingPair]
    taught_pairs: list[TrainingPair]
    last_message_id: int | None
    last_taught_pair_id: int | None

    @property
    def pairs(self) -> list[TrainingPair]:
        return [*self.taught_pairs, *self.chat_pairs]


@dataclass(frozen=True)
class _Turn:
    id: int
    chat_id: int
    user_id: int | None
    from_bot: bool
    text: str
    created_at: datetime
    opted_out: bool


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _previous_ids(session: Session, ids: Iterable[int]) -> dict[int, int]:
    """For each message id, the id of the message just before it in its chat (if any)."""
    earlier = aliased(Message)
    previous = (
        select(func.max(earlier.id))
        .where(earlier.chat_id == Message.chat_id, earlier.id < Message.id)
        .scalar_subquery()
    )
    found: dict[int, int] = {}
    for chunk in _chunks(sorted(set(ids))):
        for message_id, previous_id in session.execute(
            select(Message.id, previous).where(Message.id.in_(chunk))
        ):
            if previous_id is not None:
                found[message_id] = previous_id
    return found


def _load_turns(session: Session, ids: Iterable[int]) -> dict[int, _Turn]:
    turns: dict[int, _Turn] = {}
    query = select(
        Message.id,
        Message.chat_id,
        Message.user_id,
        Message.from_bot,
        Message.text,
        Message.created_at,
        func.coalesce(User.opted_out, False),
    ).outerjoin(User, User.id == Message.user_id)
    for chunk in _chunks(sorted(set(ids))):
        for row in session.execute(query.where(Message.id.in_(chunk))):
            turns[row[0]] = _Turn(*row)
    return turns


def _reply_conditions(filters: PairFilter, score: ColumnElement[int]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.after_message_id is not None:
        conditions.append(Message.id > filters.after_message_id)
    if filters.until_message_id is not None:
        conditions.append(Message.id <= filters.until_message_id)
    if filters.since is not None:
        conditions.append(Message.created_at >= filters.since)
    if filters.platform is not None:
        conditions.append(Chat.platform == filters.platform)
    if filters.exclude_opted_out:
        conditions.append(or_(Message.user_id.is_(None), User.opted_out.is_(False)))
    senders: list[ColumnElement[bool]] = []
    if filters.human_replies:
        senders.append(Message.from_bot.is_(False))
    if filters.bot_replies != "none":
        bot_condition: ColumnElement[bool] = {
            "upvoted": score >= filters.min_score,
            "not_downvoted": score >= 0,
            "all": true(),
        }[filters.bot_replies]
        senders.append(Message.from_bot.is_(True) & bot_condition)
    conditions.append(or_(*senders) if senders else false())
    return conditions


def _sender(turn: _Turn) -> int | None:
    return None if turn.from_bot else turn.user_id


def export_chat_pairs(session: Session, filters: PairFilter | None = None) -> list[TrainingPair]:
    """Pairs of consecutive turns chosen by `filters`, in the order the replies were written."""
    filters = filters or PairFilter()
    if filters.context_turns < 1:
        raise ValueError(f"context_turns must be >= 1, not {filters.context_turns}")
    score = (
        select(func.coalesce(func.sum(Feedback.value), 0))
        .where(Feedback.message_id == Message.id)
        .correlate(Message)
        .scalar_subquery()
    )
    replies = session.execute(
        select(Message.id, Message.reply_to_id, score)
        .join(Chat, Chat.id == Message.chat_id)
        .outerjoin(User, User.id == Message.user_id)
        .where(*_reply_conditions(filters, score))
        .order_by(Message.id)
    ).all()
    if not replies:
        return []

    previous = _previous_ids(session, (row.id for row in replies))
    answered: dict[int, int] = {}
    for reply_id, reply_to_id, _score in replies:
        target = reply_to_id if filters.prefer_explicit_reply and reply_to_id else None
        target = target or previous.get(reply_id)
        if target is not None:
            answered[reply_id] = target
    contexts = {reply_id: [target] for reply_id, target in answered.items()}
    frontier = dict(answered)  # reply id -> oldest context message id so far
    for _ in range(filters.context_turns - 1):
        earlier = _previous_ids(session, frontier.values())
        frontier = {r: earlier[m] for r, m in frontier.items() if m in earlier}
        for reply_id, message_id in frontier.items():
            contexts[reply_id].insert(0, message_id)

    turns = _load_turns(session, [*answered.keys(), *(m for ids in contexts.values() for m in ids)])
    pairs: list[TrainingPair] = []
    for reply_id, _reply_to, reply_score in replies:
        pair = _make_pair(filters, turns, reply_id, contexts.get(reply_id, []), int(reply_score))
        if pair is not None:
            pairs.append(pair)
    return pairs


def _make_pair(
    filters: PairFilter,
    turns: dict[int, _Turn],
    reply_id: int,
    context_ids: list[int],
    score: int,
) -> TrainingPair | None:
    reply = turns.get(reply_id)
    context = [turns[m] for m in context_ids if m in turns]
    if reply is None or not context:
        return None
    answered = context[-1]
    if answered.chat_id != reply.chat_id:
        return None
    if filters.context_from == "human" and answered.from_bot:
        return None
    if filters.context_from == "bot" and not answered.from_bot:
        return None
    if filters.skip_same_sender and _sender(answered) == _sender(reply):
        return None
    if filters.max_gap is not None and reply.created_at - answered.created_at > filters.max_gap:
        return None
    if filters.exclude_opted_out and any(turn.opted_out for turn in context):
        return None
    return TrainingPair(
        context=tuple(turn.text for turn in context),
        reply=reply.text,
        source="chat",
        created_at=reply.created_at,
        chat_id=reply.chat_id,
        reply_message_id=reply.id,
        context_message_ids=tuple(turn.id for turn in context),
        reply_from_bot=reply.from_bot,
        score=score,
    )


def export_taught_pairs(
    session: Session,
    *,
    after_id: int | None = None,
    until_id: int | None = None,
    exclude_opted_out: bool = True,
) -> list[TrainingPair]:
    """Taught pairs in the order they were taught, as training pairs."""
    conditions: list[ColumnElement[bool]] = []
    if after_id is not None:
        conditions.append(TaughtPair.id > after_id)
    if until_id is not None:
        conditions.append(TaughtPair.id <= until_id)
    if exclude_opted_out:
        conditions.append(or_(TaughtPair.user_id.is_(None), User.opted_out.is_(False)))
    rows = session.execute(
        select(
            TaughtPair.id,
            TaughtPair.context,
            TaughtPair.reply,
            TaughtPair.chat_id,
            TaughtPair.created_at,
        )
        .outerjoin(User, User.id == TaughtPair.user_id)
        .where(*conditions)
        .order_by(TaughtPair.id)
    )
    return [
        TrainingPair(
            context=(context,),
            reply=reply,
            source="taught",
            created_at=created_at,
            chat_id=chat_id,
            taught_pair_id=pair_id,
        )
        for pair_id, context, reply, chat_id, created_at in rows
    ]


def export_since_run(
    session: Session,
    run: RunInfo | None,
    filters: PairFilter | None = None,
    *,
    settle: timedelta = timedelta(seconds=60),
    now: datetime | None = None,
) -> PairExport:
    """Chat and taught pairs that are new since `run` (None: since the beginning).

    The upper bound is frozen at the newest message created at least `settle` ago: ids are
    handed out at INSERT but become visible at COMMIT, so a just-written id can still have a
    smaller, uncommitted neighbour that a watermark would skip for good. `filters`' own id range
    is replaced by the run's watermarks.
    """
    filters = filters or PairFilter()
    cutoff = (now or utcnow()) - settle
    until_message = session.execute(
        select(func.max(Message.id)).where(Message.created_at <= cutoff)
    ).scalar()
    until_taught = session.execute(select(func.max(TaughtPair.id))).scalar()
    after_message = run.last_message_id if run else None
    after_taught = run.last_taught_pair_id if run else None
    if until_message is None or (after_message is not None and until_message <= after_message):
        chat_pairs: list[TrainingPair] = []
        until_message = after_message
    else:
        chat_pairs = export_chat_pairs(
            session,
            replace(filters, after_message_id=after_message, until_message_id=until_message),
        )
    taught = export_taught_pairs(
        session,
        after_id=after_taught,
        until_id=until_taught,
        exclude_opted_out=filters.exclude_opted_out,
    )
    return PairExport(
        chat_pairs=chat_pairs,
        taught_pairs=taught,
        last_message_id=until_message,
        last_taught_pair_id=until_taught if until_taught is not None else after_taught,
    )


# ---------------------------------------------------------------- a user's own history


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def iter_user_history(session: Session, user_id: int) -> Iterator[dict[str, Any]]:
    """Everything stored about a user, as JSON-ready records (`type` says which kind).

    The user row, then their messages interleaved with the bot's replies to them (in chat order),
    the feedback they gave, and the pairs they taught. Raises `NotFoundError` for unknown users.
    """
    user = session.get(User, user_id)
    if user is None:
        raise NotFoundError(f"no user with id {user_id}")
    yield {
        "type": "user",
        "id": user.id,
        "platform": user.platform,
        "external_id": user.external_id,
        "display_name": user.display_name,
        "created_at": _iso(user.created_at),
        "opted_out": user.opted_out,
    }
    theirs = select(Message.id).where(Message.user_id == user_id)
    messages = session.execute(
        select(
            Message.id,
            Message.from_bot,
            Message.text,
            Message.created_at,
            Message.reply_to_id,
            Message.external_id,
            Message.model_version,
            Chat.platform.label("chat_platform"),
            Chat.external_id.label("chat_external_id"),
            Chat.kind.label("chat_kind"),
        )
        .join(Chat, Chat.id == Message.chat_id)
        .where(
            or_(
                Message.user_id == user_id,
                Message.from_bot.is_(True) & Message.reply_to_id.in_(theirs),
            )
        )
        .order_by(Message.chat_id, Message.id)
        .execution_options(yield_per=500)
    )
    for row in messages:
        yield _message_record(row)
    for message_id, value, created_at, updated_at in session.execute(
        select(Feedback.message_id, Feedback.value, Feedback.created_at, Feedback.updated_at)
        .where(Feedback.user_id == user_id)
        .order_by(Feedback.id)
    ):
        yield {
            "type": "feedback",
            "message_id": message_id,
            "value": value,
            "created_at": _iso(created_at),
            "updated_at": _iso(updated_at),
        }
    for pair_id, context, reply, created_at in session.execute(
        select(TaughtPair.id, TaughtPair.context, TaughtPair.reply, TaughtPair.created_at)
        .where(TaughtPair.user_id == user_id)
        .order_by(TaughtPair.id)
    ):
        yield {
            "type": "taught_pair",
            "id": pair_id,
            "context": context,
            "reply": reply,
            "created_at": _iso(created_at),
        }


def _message_record(row: Row[*tuple[Any, ...]]) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "bot_reply" if row.from_bot else "message",
        "id": row.id,
        "chat": {
            "platform": row.chat_platform,
            "external_id": row.chat_external_id,
            "kind": row.chat_kind,
        },
        "text": row.text,
        "created_at": _iso(row.created_at),
        "reply_to_id": row.reply_to_id,
        "external_id": row.external_id,
    }
    if row.from_bot:
        record["model_version"] = row.model_version
    return record


def write_user_history_jsonl(session: Session, user_id: int, out: TextIO) -> int:
    """Write `iter_user_history` as JSON Lines (UTF-8 text kept readable); returns line count."""
    count = 0
    for record in iter_user_history(session, user_id):
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        count += 1
    return count
