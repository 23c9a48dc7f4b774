"""Data leaving the database: the training pairs retraining reads, and conversations as people
and operators export them (`iter_conversations`, the one rule for what a person's export holds).

Which messages make training pairs is decided here, in SQL, once: a reply and the message it
answers in the same chat (the message it explicitly replied to, else the one just before it;
`context_turns` > 1 adds the messages before that, oldest first). A reply is
- a person's message answering someone else (never a person continuing their own message), or
- a bot reply that got at least one 👍 and no 👎 (`PairExport.downvoted` counts those left out
  for a 👎),
and no message of a pair may be from a user who opted out. What happens to the text (masking,
the blocklist, duplicates) is the caller's: `bot.retraining.pairs`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session, aliased

from storage.conversations import find_chat, find_user
from storage.in_lists import in_chunks
from storage.person_messages import person_message_ids, private_chat_id
from storage.tables import Chat, Feedback, Message, Platform, TaughtPair, User, utcnow
from storage.training_runs import RunInfo


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
    # Who wrote each text, context then reply (user ids; None: the bot, or a teacher unknown):
    # read with the texts, for retraining's k-distinct-users vocabulary rule.
    authors: tuple[int | None, ...] = ()

    @property
    def context_text(self) -> str:
        return self.context[-1]


@dataclass(frozen=True)
class ChatPairs:
    pairs: list[TrainingPair]
    downvoted: int  # pairs whose bot reply had a 👍 but also a 👎: left out


@dataclass(frozen=True)
class PairExport:
    """New pairs since a run, and the watermarks to store with the run that trains on them."""

    chat_pairs: list[TrainingPair]
    taught_pairs: list[TrainingPair]
    downvoted: int  # see `ChatPairs`
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


def _previous_ids(session: Session, ids: Iterable[int]) -> dict[int, int]:
    """For each message id, the id of the message just before it in its chat (if any)."""
    earlier = aliased(Message)
    previous = (
        select(func.max(earlier.id))
        .where(earlier.chat_id == Message.chat_id, earlier.id < Message.id)
        .scalar_subquery()
    )
    found: dict[int, int] = {}
    for chunk in in_chunks(sorted(set(ids))):
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
    for chunk in in_chunks(sorted(set(ids))):
        for row in session.execute(query.where(Message.id.in_(chunk))):
            turns[row[0]] = _Turn(*row)
    return turns


def _votes(sign: int) -> ColumnElement[int]:
    """How many 👍 (sign 1) or 👎 (sign -1) the outer query's message got."""
    value = Feedback.value > 0 if sign > 0 else Feedback.value < 0
    return (
        select(func.count(Feedback.id))
        .where(Feedback.message_id == Message.id, value)
        .correlate(Message)
        .scalar_subquery()
    )


def _sender(turn: _Turn) -> int | None:
    return None if turn.from_bot else turn.user_id


def export_chat_pairs(
    session: Session,
    *,
    after_message_id: int | None = None,
    until_message_id: int | None = None,
    context_turns: int = 1,
) -> ChatPairs:
    """The pairs whose reply id is in (`after_message_id`, `until_message_id`], in the order
    the replies were written (the rules: see the module docstring)."""
    if context_turns < 1:
        raise ValueError(f"context_turns must be >= 1, not {context_turns}")
    ups, downs = _votes(1), _votes(-1)
    conditions: list[ColumnElement[bool]] = [
        or_(Message.user_id.is_(None), User.opted_out.is_(False)),
        or_(Message.from_bot.is_(False), ups >= 1),
    ]
    if after_message_id is not None:
        conditions.append(Message.id > after_message_id)
    if until_message_id is not None:
        conditions.append(Message.id <= until_message_id)
    replies = session.execute(
        select(Message.id, Message.reply_to_id, ups, downs)
        .outerjoin(User, User.id == Message.user_id)
        .where(*conditions)
        .order_by(Message.id)
    ).all()
    if not replies:
        return ChatPairs([], 0)

    previous = _previous_ids(session, (row.id for row in replies))
    answered: dict[int, int] = {}
    for reply_id, reply_to_id, _ups, _downs in replies:
        target = reply_to_id or previous.get(reply_id)
        if target is not None:
            answered[reply_id] = target
    contexts = {reply_id: [target] for reply_id, target in answered.items()}
    frontier = dict(answered)  # reply id -> oldest context message id so far
    for _ in range(context_turns - 1):
        earlier = _previous_ids(session, frontier.values())
        frontier = {r: earlier[m] for r, m in frontier.items() if m in earlier}
        for reply_id, message_id in frontier.items():
            contexts[reply_id].insert(0, message_id)

    turns = _load_turns(session, [*answered.keys(), *(m for ids in contexts.values() for m in ids)])
    pairs: list[TrainingPair] = []
    downvoted = 0
    for reply_id, _reply_to, up, down in replies:
        pair = _make_pair(turns, reply_id, contexts.get(reply_id, []), int(up) - int(down))
        if pair is None:
            continue
        if pair.reply_from_bot and down:
            downvoted += 1
        else:
            pairs.append(pair)
    return ChatPairs(pairs, downvoted)


def _make_pair(
    turns: dict[int, _Turn], reply_id: int, context_ids: list[int], score: int
) -> TrainingPair | None:
    reply = turns.get(reply_id)
    context = [turns[m] for m in context_ids if m in turns]
    if reply is None or not context:
        return None
    answered = context[-1]
    if answered.chat_id != reply.chat_id or _sender(answered) == _sender(reply):
        return None
    if any(turn.opted_out for turn in context):
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
        authors=(*(_sender(turn) for turn in context), _sender(reply)),
    )


def export_taught_pairs(
    session: Session, *, after_id: int | None = None, until_id: int | None = None
) -> list[TrainingPair]:
    """Taught pairs in the order they were taught (none by a user who opted out)."""
    conditions: list[ColumnElement[bool]] = [
        or_(TaughtPair.user_id.is_(None), User.opted_out.is_(False))
    ]
    if after_id is not None:
        conditions.append(TaughtPair.id > after_id)
    if until_id is not None:
        conditions.append(TaughtPair.id <= until_id)
    rows = session.execute(
        select(
            TaughtPair.id,
            TaughtPair.context,
            TaughtPair.reply,
            TaughtPair.chat_id,
            TaughtPair.created_at,
            TaughtPair.user_id,
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
            authors=(teacher, teacher),
        )
        for pair_id, context, reply, chat_id, created_at, teacher in rows
    ]


def export_since_run(
    session: Session,
    run: RunInfo | None,
    *,
    context_turns: int = 1,
    settle: timedelta = timedelta(seconds=60),
    now: datetime | None = None,
) -> PairExport:
    """Chat and taught pairs that are new since `run` (None: since the beginning).

    The upper bound is frozen at the newest message created at least `settle` ago: ids are
    handed out at INSERT but become visible at COMMIT, so a just-written id can still have a
    smaller, uncommitted neighbour that a watermark would skip for good.
    """
    cutoff = (now or utcnow()) - settle
    until_message = session.execute(
        select(func.max(Message.id)).where(Message.created_at <= cutoff)
    ).scalar()
    until_taught = session.execute(select(func.max(TaughtPair.id))).scalar()
    after_message = run.last_message_id if run else None
    after_taught = run.last_taught_pair_id if run else None
    if until_message is None or (after_message is not None and until_message <= after_message):
        chat = ChatPairs([], 0)
        until_message = after_message
    else:
        chat = export_chat_pairs(
            session,
            after_message_id=after_message,
            until_message_id=until_message,
            context_turns=context_turns,
        )
    taught = export_taught_pairs(session, after_id=after_taught, until_id=until_taught)
    return PairExport(
        chat_pairs=chat.pairs,
        taught_pairs=taught,
        downvoted=chat.downvoted,
        last_message_id=until_message,
        last_taught_pair_id=until_taught if until_taught is not None else after_taught,
    )


# ---------------------------------------------------------------- conversations, for people

CONVERSATION_CHUNK = 500  # rows fetched from the database at a time


@dataclass(frozen=True)
class ConversationQuery:
    """Which stored messages a conversation export holds.

    `user`: that person's messages, in every chat, and the bot's replies to them (what /forget
    deletes; other people's messages in a shared group are theirs, not this person's). `chat`:
    every message of that chat. Both: that person's part of that chat. `since`: only messages
    written at or after it. Ids are the platform's own (a Telegram user or chat id), on
    `platform` (a `Platform` value; the lookups raise ValueError for any other, which front ends
    refuse before); with no `user` and no `chat`, every chat of every platform.
    """

    platform: str = Platform.TELEGRAM.value
    user: str | None = None
    chat: str | None = None
    since: datetime | None = None


@dataclass(frozen=True)
class ConversationRow:
    """One stored message as an export shows it: the people and the chat by their platform ids
    (ours mean nothing outside the database), the message's own id for `reply_to_message_id`."""

    message_id: int
    platform: str
    chat_id: str
    chat_kind: str
    user_id: str | None  # the sender; None for the bot
    user_name: str | None
    role: Literal["user", "bot"]
    time: datetime
    text: str
    reply_to_message_id: int | None
    platform_message_id: str | None
    model_version: str | None  # the model version that wrote a bot reply (None: a fixed answer)
    feedback_up: int  # 👍 on a bot reply, by anyone
    feedback_down: int


def conversation_subject_known(session: Session, query: ConversationQuery) -> bool:
    """Whether the user and the chat `query` names are stored (true when it names neither)."""
    if query.user is not None and find_user(session, query.platform, query.user) is None:
        return False
    return query.chat is None or find_chat(session, query.platform, query.chat) is not None


def iter_conversations(
    session: Session, query: ConversationQuery, *, chunk_size: int = CONVERSATION_CHUNK
) -> Iterator[ConversationRow]:
    """The messages `query` selects, each chat's in the order they were written, chats in the
    order they were first seen. Streamed `chunk_size` rows at a time (a server-side cursor on
    PostgreSQL), so an export of the whole database never holds it in memory. Nothing for a user
    or chat that is not stored (never seen, or forgotten)."""
    conditions: list[ColumnElement[bool]] = []
    if query.user is not None:
        user_id = find_user(session, query.platform, query.user)
        if user_id is None:
            return
        private = private_chat_id(session, query.platform, str(query.user))
        conditions.append(Message.id.in_(person_message_ids(user_id, private)))
    if query.chat is not None:
        chat_id = find_chat(session, query.platform, query.chat)
        if chat_id is None:
            return
        conditions.append(Message.chat_id == chat_id)
    if query.since is not None:
        conditions.append(Message.created_at >= query.since)
    rows = session.execute(
        select(
            Message.id,
            Chat.platform,
            Chat.external_id,
            Chat.kind,
            User.external_id,
            User.display_name,
            Message.from_bot,
            Message.created_at,
            Message.text,
            Message.reply_to_id,
            Message.external_id,
            Message.model_version,
            _votes(1),
            _votes(-1),
        )
        .join(Chat, Chat.id == Message.chat_id)
        .outerjoin(User, User.id == Message.user_id)
        .where(*conditions)
        .order_by(Message.chat_id, Message.id)
        .execution_options(yield_per=chunk_size)
    )
    for row in rows:
        yield ConversationRow(
            message_id=row[0],
            platform=row[1],
            chat_id=row[2],
            chat_kind=row[3],
            user_id=row[4],
            user_name=row[5],
            role="bot" if row[6] else "user",
            time=row[7],
            text=row[8],
            reply_to_message_id=row[9],
            platform_message_id=row[10],
            model_version=row[11],
            feedback_up=int(row[12]),
            feedback_down=int(row[13]),
        )
