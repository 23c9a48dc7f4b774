"""The dialogue service: one path from a person's message to a stored, generated reply.

Both front ends (console, Telegram) call `respond()`; what works in one works in the other.
Messages of one chat are handled in order (a lock per chat); different chats run concurrently and
their decodes are micro-batched. Storage calls run in worker threads, never on the event loop.

A front end that sends through the outbox (Telegram) passes a `ReplyRoute`: the answer is then
queued in the transaction that stores it, so an answer is never stored and then lost, and a
message delivered again gets the answer it is still owed. A database that does not answer is
not the model failing: its errors reach the caller, which waits the outage out and tries again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot import answers
from bot.answers import FixedReason
from bot.batching import MicroBatcher
from bot.model_slot import ModelSlot
from config import DialogueSettings
from storage import context_starts, conversations, outbox, privacy
from storage.conversations import ChatRef, SavedExchange, Turn, UserRef
from storage.database import Database
from storage.errors import StorageError
from storage.faults import is_transient
from storage.feedback import get_feedback, set_feedback
from storage.handled_commands import CommandClaim, claim_command
from storage.outbox import OutgoingMessage
from storage.privacy import ForgetResult
from storage.stats import Counts, counts

log = logging.getLogger(__name__)

# Our row ids are signed 64-bit integers (BIGINT; SQLite's INTEGER): nothing larger names a row.
MAX_ROW_ID = 2**63 - 1

# What storage cannot hold (NUL, lone surrogates) is dropped before anything is saved.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` without what no database can hold and no UTF-8 can encode (NUL, lone surrogates).

    Messages, names and chat titles come from strangers: one such character in a display name
    must not lock a person out of the bot (nothing stored, no reply), and a greeting that quotes
    the name must still be sendable. Every other character is kept."""
    return _UNSTORABLE.sub("", text)


def storable_user(user: UserRef) -> UserRef:
    name = user.display_name
    return user if name is None else replace(user, display_name=storable(name))


def storable_chat(chat: ChatRef) -> ChatRef:
    return chat if chat.title is None else replace(chat, title=storable(chat.title))


@dataclass(frozen=True)
class Incoming:
    """A message as a front end received it."""

    platform: str  # "telegram" | "console"
    chat_id: str | int
    user_id: str | int
    text: str
    user_name: str | None = None
    chat_kind: str = "private"  # "private" | "group"
    chat_title: str | None = None
    message_id: str | int | None = None  # the platform's own id of this message

    @property
    def chat(self) -> ChatRef:
        return storable_chat(ChatRef(self.platform, self.chat_id, self.chat_kind, self.chat_title))

    @property
    def user(self) -> UserRef:
        return storable_user(UserRef(self.platform, self.user_id, self.user_name))


@dataclass(frozen=True)
class ReplyRoute:
    """How a front end sends the answer to one incoming message: through the outbox, to
    `chat_key`, shown as an answer to the platform message `reply_to` (if given), with the
    buttons `markup(reply_id)` under a stored reply (if given).

    Each answer is queued at most once: the answer to a stored message under `answer:<its id>`,
    an answer to a message that is not stored (empty) under `<source_key>:answer`, where
    `source_key` names the delivery (e.g. the platform's update id; None: no such guarantee).
    """

    chat_key: str | int
    reply_to: str | int | None = None
    markup: Callable[[int], dict[str, Any]] | None = None
    source_key: str | None = None

    def outgoing(
        self, platform: str, text: str, *, reply_id: int | None, turn_id: int | None
    ) -> OutgoingMessage:
        if turn_id is not None:
            key: str | None = f"answer:{turn_id}"
        else:
            key = None if self.source_key is None else f"{self.source_key}:answer"
        buttons = self.markup(reply_id) if self.markup is not None and reply_id else None
        return OutgoingMessage(
            platform,
            self.chat_key,
            text,
            reply_to_external_id=self.reply_to,
            reply_markup=buttons,
            message_id=reply_id,
            dedupe_key=key,
        )


@dataclass(frozen=True)
class Answer:
    text: str
    fixed_reason: FixedReason | None  # why it is a fixed answer; None: a generated reply
    reply_id: int | None = None  # our id of the stored reply (feedback points at it)
    turn_id: int | None = None
    model_version: str | None = None
    latency_ms: float = 0.0
    duplicate: bool = False  # the platform delivered this message before: send nothing
    queued: bool = False  # in the outbox already (a `ReplyRoute` was given): send nothing

    @property
    def generated(self) -> bool:
        """The model wrote it (not a fixed answer, not a redelivery that gets nothing)."""
        return self.fixed_reason is None and not self.duplicate


DUPLICATE = Answer("", fixed_reason=None, duplicate=True)


class DialogueService:
    def __init__(
        self,
        db: Database,
        models: ModelSlot,
        settings: DialogueSettings,
        batcher: MicroBatcher | None = None,
    ) -> None:
        self.db = db
        self.models = models
        self.settings = settings
        self.batcher = batcher or MicroBatcher(
            models, settings.batch_window_ms, settings.max_batch_size
        )
        self._chat_locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # ---- the main path ---------------------------------------------------------------------------

    async def respond(self, msg: Incoming, route: ReplyRoute | None = None) -> Answer:
        """Store `msg`, generate and store the answer (queued for sending if `route` is given).
        Database errors are raised: the message is then neither stored nor answered, and the
        caller tries again once the database answers."""
        text = storable(msg.text)
        fixed = self._fixed_answer(text)
        if fixed is not None:
            return await self._answer_fixed(msg, text, fixed, route)
        async with self._lock_for(msg.platform, msg.chat_id):
            started = time.perf_counter()
            # One read: a redelivery's stored turn, or else the context the model reads.
            turn_id, history = await self.db.run_read(self._turn_or_history, msg)
            if turn_id is not None:
                await self._delivered_again(msg, turn_id, route)
                return DUPLICATE
            try:
                generated = await self.batcher.generate([*history, text])
            except Exception as exc:
                if is_transient(exc):  # the database (the model registry), not the model
                    raise
                log.exception("generation failed", extra={"chat_id": msg.chat_id})
                # The message is kept all the same.
                turn_id = await self.db.run(_save_turn_and_apology, msg, text, route)
                return Answer(
                    answers.APOLOGY,
                    fixed_reason=FixedReason.MODEL_ERROR,
                    turn_id=turn_id,
                    queued=route is not None,
                )
            latency_ms = (time.perf_counter() - started) * 1000.0
            reply = generated.reply.text or "…"
            saved = await self.db.run(
                _save_exchange,
                msg,
                text,
                reply,
                route,
                model_version=generated.version,
                latency_ms=latency_ms,
            )
        return Answer(
            reply,
            fixed_reason=None,
            reply_id=saved.reply_id,
            turn_id=saved.turn_id,
            model_version=generated.version,
            latency_ms=latency_ms,
            queued=route is not None,
        )

    async def queue(self, message: OutgoingMessage) -> bool:
        """Put a message the front end composed (a command's answer) into the outbox; False
        when one with its `dedupe_key` was queued before."""
        return await self.db.run(outbox.enqueue, message) is not None

    async def record(self, msg: Incoming) -> int | None:
        """Store a message that gets no answer (group chatter between people); its id."""
        text = storable(msg.text)
        if not text.strip():
            return None
        async with self._lock_for(msg.platform, msg.chat_id):
            if await self._seen_before(msg):
                return None
            return await self.db.run(_save_turn_only, msg, text)

    def _fixed_answer(self, text: str) -> Answer | None:
        """The fixed answer (text and reason, not yet stored) to input the model cannot take."""
        if not text.strip():
            return Answer(answers.EMPTY, FixedReason.EMPTY)
        if len(text) > self.settings.max_input_chars:
            limit = self.settings.max_input_chars
            return Answer(answers.TOO_LONG.format(limit=limit), FixedReason.TOO_LONG)
        if not any(ch.isalnum() for ch in text):
            return Answer(answers.NO_WORDS, FixedReason.NO_WORDS)
        if self.models.current().responder.unknown_fraction(text) >= 1.0:
            return Answer(answers.UNKNOWN_WORDS, FixedReason.UNKNOWN_WORDS)
        return None

    async def _answer_fixed(
        self, msg: Incoming, text: str, fixed: Answer, route: ReplyRoute | None
    ) -> Answer:
        if not text.strip():  # nothing to store: only the answer is queued
            if route is None:
                return fixed
            outgoing = route.outgoing(msg.platform, fixed.text, reply_id=None, turn_id=None)
            await self.db.run(outbox.enqueue, outgoing)
            return replace(fixed, queued=True)
        async with self._lock_for(msg.platform, msg.chat_id):
            if await self._seen_before(msg, route):
                return DUPLICATE
            saved = await self.db.run(_save_exchange, msg, text, fixed.text, route)
        return replace(
            fixed, reply_id=saved.reply_id, turn_id=saved.turn_id, queued=route is not None
        )

    async def _seen_before(self, msg: Incoming, route: ReplyRoute | None = None) -> bool:
        """A platform may deliver one message twice (a bot restarted before acknowledging an
        update); the second delivery is neither stored nor answered again. With a `route`, an
        answer that was stored but never delivered is queued (again: queueing is idempotent)."""
        if msg.message_id is None:
            return False
        turn_id = await self.db.run_read(_stored_turn_id, msg)
        if turn_id is None:
            return False
        await self._delivered_again(msg, turn_id, route)
        return True

    async def _delivered_again(self, msg: Incoming, turn_id: int, route: ReplyRoute | None) -> None:
        """`msg` was stored before as `turn_id`: queue its answer if it is still owed."""
        if route is not None and await self.db.run(_queue_owed_answer, msg, turn_id, route):
            log.info(
                "message %s was delivered again; its answer is still owed: queued",
                msg.message_id,
                extra={"chat_id": msg.chat_id},
            )
            return
        log.info(
            "message %s was delivered again; ignored",
            msg.message_id,
            extra={"chat_id": msg.chat_id},
        )

    async def first_delivery(
        self,
        platform: str,
        chat_id: str | int,
        message_id: str | int,
        *,
        update_id: int | None = None,
        answer_key: str | None = None,
    ) -> bool:
        """Whether a command (which is not stored as dialogue) is to be handled: it arrives for
        the first time, or `update_id`, the update that claimed it before, comes again without
        its answer (keyed `answer_key` in the outbox) queued: a process died between claiming
        and answering. A redelivery (another update), like a text's, is not answered again.
        Recorded in the database, so a restarted process or another replica knows it too."""
        claim = await self.db.run(
            claim_command,
            platform,
            chat_id,
            message_id,
            update_id=update_id,
            answer_key=answer_key,
        )
        if claim is CommandClaim.RESUMED:
            log.info(
                "command %s was claimed by update %s, which never answered it (a process "
                "died?); handled again",
                message_id,
                update_id,
                extra={"chat_id": chat_id},
            )
        elif claim is CommandClaim.ANSWERED:
            log.info(
                "command %s was answered before; ignored", message_id, extra={"chat_id": chat_id}
            )
        elif claim is CommandClaim.DUPLICATE:
            log.info(
                "command %s was delivered again; ignored", message_id, extra={"chat_id": chat_id}
            )
        return claim.to_handle

    def _turn_or_history(self, session: Session, msg: Incoming) -> tuple[int | None, list[str]]:
        """The chat looked up once, then: our id of `msg` if it was stored before (a platform
        delivering it again), or else the texts of the chat's messages before it (since its last
        /reset), oldest first: as many as the active model reads (its recipe's context turns),
        less this one."""
        chat_id = conversations.find_chat(session, msg.platform, msg.chat_id)
        if chat_id is None:
            return None, []
        if msg.message_id is not None:
            turn = conversations.find_turn_by_external_id(session, chat_id, msg.message_id)
            if turn is not None:
                return turn.id, []
        k = self.models.current().responder.context_turns - 1
        return None, context_starts.context_texts(session, chat_id, k) if k > 0 else []

    def _lock_for(self, platform: str, chat_id: str | int) -> asyncio.Lock:
        key = _key(platform, chat_id)
        lock = self._chat_locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._chat_locks[key] = lock
        return lock

    # ---- chat commands ---------------------------------------------------------------------------

    async def reset(self, platform: str, chat_id: str | int) -> None:
        """Start a new context: earlier messages stay stored but no longer feed the model.
        Stored in the database, so the reset holds in every replica and after a restart."""
        await self.db.run(_reset_context, platform, chat_id)

    async def history(self, platform: str, chat_id: str | int, limit: int = 20) -> list[Turn]:
        return await self.db.run_read(_recent_turns, platform, chat_id, limit)

    async def forget(self, platform: str, user_id: str | int) -> ForgetResult | None:
        """Delete everything stored about a user; None when nothing was stored."""
        return await self.db.run(_forget, platform, user_id)

    async def set_opted_out(self, user: UserRef, opted_out: bool) -> None:
        """/optout (True) keeps a person's messages out of retraining; /optin undoes it."""
        await self.db.run(_set_opted_out, storable_user(user), opted_out)

    async def close(self) -> None:
        await self.batcher.close()

    # ---- ratings, sent replies, counts (front ends and admin commands) --------------------------

    async def feedback(
        self, chat: ChatRef, user: UserRef, reply_id: int, value: int
    ) -> Vote | None:
        """Store `user`'s 👍 (+1) or 👎 (-1) on our reply `reply_id`; pressing again changes it.
        None when `reply_id` is not (or no longer: /forget) a bot message of `chat`, or could
        not be one (a forged callback's id beyond the database's 64-bit ids). Votes of one chat
        are stored in the order they came (the chat's lock), so the last press wins."""
        if not 0 < reply_id <= MAX_ROW_ID:
            return None
        async with self._lock_for(str(chat.platform), chat.external_id):
            return await self.db.run(
                _vote, storable_chat(chat), storable_user(user), reply_id, value
            )

    async def mark_sent(self, reply_id: int, external_id: str | int) -> bool:
        """Record the platform's id of a reply once it is sent, so a later "reply to" maps back.
        Bookkeeping only (the reply went out): a failure is logged and reported as False."""
        try:
            await self.db.run(conversations.set_external_id, reply_id, external_id)
        except (StorageError, SQLAlchemyError) as exc:
            log.warning("could not record the platform id of reply %s: %s", reply_id, exc)
            return False
        return True

    async def stats(self, platform: str | None = None, since: datetime | None = None) -> Counts:
        """Users, chats, messages, ratings and mean latency (of `platform`, since `since`)."""
        return await self.db.run_read(counts, platform=platform, since=since)


def _key(platform: str, chat_id: str | int) -> tuple[str, str]:
    return (str(platform), str(chat_id))


def _save_exchange(
    session: Session,
    msg: Incoming,
    text: str,
    reply: str,
    route: ReplyRoute | None,
    *,
    model_version: str | None = None,
    latency_ms: float | None = None,
) -> SavedExchange:
    """The message, the reply and (with a `route`) the reply queued for sending: one
    transaction, so none of them exists without the others."""
    saved = conversations.save_exchange(
        session,
        msg.chat,
        msg.user,
        text,
        reply,
        model_version=model_version,
        latency_ms=latency_ms,
        turn_external_id=msg.message_id,
    )
    if route is not None:
        outgoing = route.outgoing(
            msg.platform, reply, reply_id=saved.reply_id, turn_id=saved.turn_id
        )
        outbox.enqueue(session, outgoing)
    return saved


def _save_turn_and_apology(
    session: Session, msg: Incoming, text: str, route: ReplyRoute | None
) -> int:
    """The message (the model failed on it) and, with a `route`, the apology queued."""
    turn_id = _save_turn_only(session, msg, text)
    if route is not None:
        outgoing = route.outgoing(msg.platform, answers.APOLOGY, reply_id=None, turn_id=turn_id)
        outbox.enqueue(session, outgoing)
    return turn_id


def _queue_owed_answer(session: Session, msg: Incoming, turn_id: int, route: ReplyRoute) -> bool:
    """Queue the stored reply to `turn_id` unless it was delivered; whether one is owed."""
    reply = conversations.find_reply_to(session, turn_id)
    if reply is None or reply.external_id is not None:
        return False
    outgoing = route.outgoing(msg.platform, reply.text, reply_id=reply.id, turn_id=turn_id)
    outbox.enqueue(session, outgoing)
    return True


def _save_turn_only(session: Session, msg: Incoming, text: str) -> int:
    chat_id = conversations.get_or_create_chat(session, msg.chat)
    user_id = conversations.get_or_create_user(session, msg.user)
    return conversations.save_turn(
        session, chat_id=chat_id, user_id=user_id, text=text, external_id=msg.message_id
    )


def _stored_turn_id(session: Session, msg: Incoming) -> int | None:
    chat_id = conversations.find_chat(session, msg.platform, msg.chat_id)
    if chat_id is None or msg.message_id is None:
        return None
    turn = conversations.find_turn_by_external_id(session, chat_id, msg.message_id)
    return None if turn is None else turn.id


def _reset_context(session: Session, platform: str, chat_id: str | int) -> None:
    found = conversations.find_chat(session, platform, chat_id)
    if found is not None:  # a chat with nothing stored has no context to leave behind
        context_starts.reset_context(session, found)


def _recent_turns(session: Session, platform: str, chat_id: str | int, limit: int) -> list[Turn]:
    found = conversations.find_chat(session, platform, chat_id)
    return [] if found is None else conversations.recent_context(session, found, limit)


def _forget(session: Session, platform: str, user_id: str | int) -> ForgetResult | None:
    found = conversations.find_user(session, platform, user_id)
    return None if found is None else privacy.forget_user(session, found)


def _set_opted_out(session: Session, user: UserRef, opted_out: bool) -> None:
    privacy.set_opted_out(session, conversations.get_or_create_user(session, user), opted_out)


@dataclass(frozen=True)
class Vote:
    reply_id: int
    value: int
    previous: int | None  # the user's earlier vote on this reply, if any

    @property
    def changed(self) -> bool:
        return self.previous != self.value


def _vote(session: Session, chat: ChatRef, user: UserRef, reply_id: int, value: int) -> Vote | None:
    turn = conversations.get_turn(session, reply_id)
    chat_id = conversations.find_chat(session, chat.platform, chat.external_id)
    if turn is None or not turn.from_bot or chat_id is None or turn.chat_id != chat_id:
        return None  # also refuses a crafted callback that names another chat's reply
    user_id = conversations.get_or_create_user(session, user)
    previous = get_feedback(session, reply_id, user_id)
    set_feedback(session, reply_id, user_id, value)
    return Vote(reply_id, value, previous)
