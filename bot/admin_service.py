"""The admins' use cases, the same on every front end: /status, /stats, /teach, /rollback,
/retrain.

Front ends decide who is an admin, parse the command and format the typed result; everything
that reads or writes storage, or starts a retraining, happens here, in worker threads (never on
the event loop). Refusals a person can act on (nothing to roll back to, a run already running,
text the database cannot hold) come back as results, not exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, Literal, TypeVar

from sqlalchemy.orm import Session

from bot import answers
from bot.app import App
from bot.command_answer import AnsweredBefore, CommandAnswer
from bot.dialogue import storable_chat, storable_user
from bot.retraining.errors import NotEnoughPairsError, RetrainError
from bot.retraining.job import PreparedRun, RetrainOutcome
from bot.retraining.scheduler import RetrainScheduler
from bot.retraining.service import RetrainService
from nlp.errors import NlpError
from storage import conversations, model_versions, teaching, training_runs
from storage.conversations import ChatRef, UserRef
from storage.errors import NoPreviousVersionError, StorageError, TrainingRunInProgressError
from storage.stats import Counts
from storage.training_runs import RunInfo

log = logging.getLogger(__name__)

_ARROW = "=>"
R = TypeVar("R")
# The result of a command whose answer another run of it queued (and whose change it made).
ANSWERED_BEFORE = "answered by another run of this command"


@dataclass(frozen=True)
class StatusReport:
    model_version: str  # the version answering now
    metrics_source: Literal["registry", "checkpoint"]
    metrics: dict[str, Any] | None
    totals: Counts  # over every platform, all time
    last_run: RunInfo | None
    uptime_seconds: float


@dataclass(frozen=True)
class StatsReport:
    platform: str  # the front end that asked: its own counts are shown beside the totals
    total: Counts
    on_platform: Counts
    on_platform_last_day: Counts
    last_run: RunInfo | None


@dataclass(frozen=True)
class Teaching:
    """`/teach <context> => <reply>`, whitespace collapsed."""

    context: str
    reply: str


@dataclass(frozen=True)
class TeachResult:
    teaching: Teaching
    pair_id: int | None  # None: not stored, `refusal` says why
    refusal: str | None = None


@dataclass(frozen=True)
class RollbackResult:
    version: str | None  # the version active now; None when there was nothing to roll back to
    refusal: str | None = None


class RetrainRefusal(Enum):
    BUSY = "busy"  # a run is in progress
    TOO_FEW = "too_few"  # fewer new pairs than the settings ask for (`force` overrides)
    CANNOT = "cannot"  # configuration, checkpoint or database trouble


@dataclass(frozen=True)
class RetrainStart:
    prepared: PreparedRun | None  # None when refused
    refusal: RetrainRefusal | None = None
    reason: str = ""


def parse_teaching(argument: str) -> Teaching | None:
    """`what someone says => what to answer`; None unless both sides have words."""
    said, arrow, answer = argument.partition(_ARROW)
    said, answer = " ".join(said.split()), " ".join(answer.split())
    if not arrow or not said or not answer:
        return None
    return Teaching(said, answer)


class AdminService:
    """One per front end process; its creation is the start of the uptime /status shows."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._retrain: RetrainService | None = None
        self._scheduler: RetrainScheduler | None = None
        self.started_at = time.monotonic()

    @property
    def retrain_service(self) -> RetrainService:
        """The process's retraining service (the scheduler's, where one runs), else our own."""
        if self._retrain is None:
            self._retrain = RetrainService(self.app.settings, self.app.db)
        return self._retrain

    @property
    def scheduler(self) -> RetrainScheduler:
        """The process's running scheduler, or one that only edits the stored schedules."""
        if self._scheduler is None:
            self._scheduler = RetrainScheduler(self.app.settings, self.app.db, self.retrain_service)
        return self._scheduler

    def use_retraining(
        self, service: RetrainService, scheduler: RetrainScheduler | None = None
    ) -> None:
        """Share the process's running scheduler and its service, so that /retrain and the
        scheduled runs take turns and stop together."""
        self._retrain = service
        self._scheduler = scheduler

    # ---- reports --------------------------------------------------------------------------------

    async def status(self) -> StatusReport:
        loaded = self.app.models.current()
        registered = await self.app.db.run_read(model_versions.get_active_version)
        source: Literal["registry", "checkpoint"]
        if registered is not None and registered.name == loaded.version:
            metrics, source = registered.metrics, "registry"
        else:
            metrics, source = loaded.responder.metrics, "checkpoint"
        return StatusReport(
            model_version=loaded.version,
            metrics_source=source,
            metrics=metrics,
            totals=await self.app.service.stats(),
            last_run=await self._last_run(),
            uptime_seconds=time.monotonic() - self.started_at,
        )

    async def stats(self, platform: str) -> StatsReport:
        day_ago = datetime.now(UTC) - timedelta(days=1)
        service = self.app.service
        return StatsReport(
            platform=platform,
            total=await service.stats(),
            on_platform=await service.stats(platform=platform),
            on_platform_last_day=await service.stats(platform=platform, since=day_ago),
            last_run=await self._last_run(),
        )

    async def _last_run(self) -> RunInfo | None:
        runs = await self.app.db.run_read(training_runs.list_runs, limit=1)
        return runs[0] if runs else None

    # ---- teaching and the model registry --------------------------------------------------------

    async def teach(
        self,
        chat: ChatRef,
        user: UserRef,
        taught: Teaching,
        answer: CommandAnswer[TeachResult] | None = None,
    ) -> TeachResult:
        """Store a pair for the next retraining, taught by `user` in `chat`. Either side longer
        than the dialogue's input limit is refused: the model would never be given such a
        context, and a reply that long would be cut off in training. With `answer`, the result's
        answer is queued too, with the pair (see `bot.command_answer`)."""
        limit = self.app.settings.dialogue.max_input_chars
        if max(len(taught.context), len(taught.reply)) > limit:
            refused = TeachResult(taught, None, answers.TEACH_TOO_LONG.format(limit=limit))
            return await self._answered(refused, answer)
        try:
            return await self.app.db.run(
                _store_teaching, storable_chat(chat), storable_user(user), taught, answer
            )
        except StorageError as exc:  # e.g. text the database cannot hold
            return await self._answered(TeachResult(taught, None, str(exc)), answer)
        except AnsweredBefore:
            log.info("/teach was answered by another run of it; taught nothing")
            return TeachResult(taught, None, ANSWERED_BEFORE)

    async def rollback(self, answer: CommandAnswer[RollbackResult] | None = None) -> RollbackResult:
        """Back to the previously active model version; running bots follow within seconds.
        With `answer`, the result's answer is queued too, with the switch."""
        try:
            return await self.app.db.run(_roll_back, answer)
        except NoPreviousVersionError as exc:
            return await self._answered(RollbackResult(None, str(exc)), answer)
        except AnsweredBefore:
            log.info("/rollback was answered by another run of it; rolled nothing back")
            return RollbackResult(None, ANSWERED_BEFORE)

    async def _answered(self, result: R, answer: CommandAnswer[R] | None) -> R:
        """`result` (a refusal: nothing changed), its answer queued if there is one and it was
        not queued before."""
        if answer is not None:
            with contextlib.suppress(AnsweredBefore):
                await self.app.db.run(answer.queue, result)
        return result

    # ---- retraining -----------------------------------------------------------------------------

    async def start_retrain(self, trigger: str, force: bool = False) -> RetrainStart:
        """Take the run lock and choose the pairs (quick); the training is `complete_retrain`."""
        try:
            prepared = await asyncio.to_thread(self.retrain_service.start, trigger, force)
        except TrainingRunInProgressError as exc:
            return RetrainStart(None, RetrainRefusal.BUSY, str(exc))
        except NotEnoughPairsError as exc:
            return RetrainStart(None, RetrainRefusal.TOO_FEW, str(exc))
        except (RetrainError, NlpError, StorageError) as exc:
            return RetrainStart(None, RetrainRefusal.CANNOT, str(exc))
        return RetrainStart(prepared)

    def complete_retrain(self, prepared: PreparedRun) -> RetrainOutcome:
        """Train, gate, promote or reject: blocking for minutes, so call it in a worker thread.
        A failure is recorded with the run and returned, not raised."""
        return self.retrain_service.complete(prepared)

    def cancel_retraining(self) -> None:
        """Stop a run in progress (recorded as failed); no later run starts in this service."""
        self.retrain_service.close()


def _store_teaching(
    session: Session,
    chat: ChatRef,
    user: UserRef,
    taught: Teaching,
    answer: CommandAnswer[TeachResult] | None,
) -> TeachResult:
    pair_id = teaching.add_taught_pair(
        session,
        taught.context,
        taught.reply,
        user_id=conversations.get_or_create_user(session, user),
        chat_id=conversations.get_or_create_chat(session, chat),
    )
    result = TeachResult(taught, pair_id)
    if answer is not None:
        answer.queue(session, result)
    return result


def _roll_back(session: Session, answer: CommandAnswer[RollbackResult] | None) -> RollbackResult:
    result = RollbackResult(model_versions.rollback_version(session).name)
    if answer is not None:
        answer.queue(session, result)
    return result
