"""Retraining from Telegram: admins' /retrain, /teach, /schedule, /rollback; everyone's /optout
and /optin.

Admin commands go through `admins_only`: anyone else gets the fixed "not allowed" answer and
nothing happens. Nothing here blocks the event loop: database calls and the job run in worker
threads, the training itself in its own process, so the bot keeps answering during a run. A
/retrain answers at once (started, already running, too few pairs) and reports the result to
every admin when the run ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from sqlalchemy.orm import Session
from telegram import Update
from telegram.ext import Application, ContextTypes

from bot.retraining import report
from bot.retraining.errors import InvalidScheduleError, NotEnoughPairsError, RetrainError
from bot.retraining.job import PreparedRun
from bot.retraining.scheduler import RetrainScheduler, Schedule
from bot.retraining.service import RetrainService
from bot.telegram import retrain_phrases
from bot.telegram.admin import admins_only, reply
from bot.telegram.groups import chat_kind
from bot.telegram.sending import send_text
from bot.telegram.state import PLATFORM, BotState, bot_state
from nlp.errors import NlpError
from storage import conversations, model_versions, privacy, teaching
from storage.conversations import ChatRef, UserRef
from storage.errors import NoPreviousVersionError, StorageError, TrainingRunInProgressError

log = logging.getLogger(__name__)

SERVICE_KEY = "retrain_service"
SCHEDULER_KEY = "retrain_scheduler"
_COMMAND = re.compile(r"^/\w+(@\w+)?\s*")


def attach(
    application: Application[Any, Any, Any, Any, Any, Any],
    service: RetrainService,
    scheduler: RetrainScheduler | None = None,
) -> None:
    """Share a process's retraining service (and running scheduler) with the handlers."""
    application.bot_data[SERVICE_KEY] = service
    if scheduler is not None:
        application.bot_data[SCHEDULER_KEY] = scheduler


def _service(context: ContextTypes.DEFAULT_TYPE) -> RetrainService:
    service = context.bot_data.get(SERVICE_KEY)
    if service is None:
        app = bot_state(context).app
        service = context.bot_data[SERVICE_KEY] = RetrainService(app.settings, app.db)
    return service


def _scheduler(context: ContextTypes.DEFAULT_TYPE) -> RetrainScheduler:
    """The running scheduler of this process, or one that only edits the job store."""
    scheduler = context.bot_data.get(SCHEDULER_KEY)
    if scheduler is None:
        app = bot_state(context).app
        scheduler = RetrainScheduler(app.settings, app.db, _service(context))
    return scheduler


def _argument(update: Update) -> str:
    """The text after `/command` (or `/command@bot`)."""
    message = update.effective_message
    text = message.text if message is not None and message.text else ""
    return _COMMAND.sub("", text, count=1).strip()


# ---- /retrain ------------------------------------------------------------------------------------


@admins_only
async def retrain(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    force = _argument(update).lower() == "force"
    service = _service(context)
    try:
        prepared = await asyncio.to_thread(service.start, "telegram", force)
    except TrainingRunInProgressError as exc:
        await reply(update, context, retrain_phrases.RETRAIN_BUSY.format(error=exc))
        return
    except NotEnoughPairsError as exc:
        await reply(update, context, retrain_phrases.RETRAIN_TOO_FEW.format(error=exc))
        return
    except (RetrainError, NlpError, StorageError) as exc:
        await reply(update, context, retrain_phrases.RETRAIN_CANNOT.format(error=exc))
        return
    await reply(
        update,
        context,
        retrain_phrases.RETRAIN_STARTED.format(
            run=prepared.run.id,
            pairs=len(prepared.pairs),
            heldout=len(prepared.heldout),
            parent=prepared.parent.name,
        ),
    )
    context.application.create_task(
        _complete(context, service, prepared), update=update, name=f"retrain-{prepared.run.id}"
    )


async def _complete(
    context: ContextTypes.DEFAULT_TYPE, service: RetrainService, prepared: PreparedRun
) -> None:
    outcome = await asyncio.to_thread(service.complete, prepared)
    await tell_admins(bot_state(context), context, report.outcome_text(outcome))


async def tell_admins(state: BotState, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
    for admin_id in state.settings.admin_ids:
        await send_text(
            context.bot,
            admin_id,
            text,
            retries=state.settings.send_retries,
            delay_seconds=state.settings.send_retry_delay_seconds,
        )


# ---- /teach --------------------------------------------------------------------------------------


@admins_only
async def teach(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    said, arrow, answer = _argument(update).partition("=>")
    said, answer = " ".join(said.split()), " ".join(answer.split())
    if not arrow or not said or not answer:
        await reply(update, context, retrain_phrases.TEACH_USAGE)
        return
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    chat = ChatRef(PLATFORM, message.chat.id, chat_kind(message.chat), message.chat.title)
    person = UserRef(PLATFORM, user.id, user.full_name)

    def store(session: Session) -> int:
        return teaching.add_taught_pair(
            session,
            said,
            answer,
            user_id=conversations.get_or_create_user(session, person),
            chat_id=conversations.get_or_create_chat(session, chat),
        )

    try:
        await bot_state(context).app.db.run(store)
    except StorageError as exc:  # e.g. text the database cannot hold
        await reply(update, context, f"{exc}")
        return
    await reply(update, context, retrain_phrases.TEACH_DONE.format(context=said, reply=answer))


# ---- /schedule -----------------------------------------------------------------------------------


@admins_only
async def schedule(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    argument = _argument(update)
    scheduler = _scheduler(context)
    timezone = bot_state(context).app.settings.retrain.timezone
    if not argument:
        found = await asyncio.to_thread(scheduler.list)
        text = (
            retrain_phrases.SCHEDULE_LIST.format(
                timezone=timezone, schedules="\n".join(_schedule_line(s) for s in found)
            )
            if found
            else retrain_phrases.SCHEDULE_NONE.format(timezone=timezone)
        )
    elif argument.lower() == "off":
        removed = await asyncio.to_thread(scheduler.remove_all)
        text = retrain_phrases.SCHEDULE_OFF if removed else retrain_phrases.SCHEDULE_OFF_NONE
    else:
        try:
            added = await asyncio.to_thread(scheduler.replace_all, argument)
        except InvalidScheduleError as exc:
            text = retrain_phrases.SCHEDULE_BAD.format(error=exc)
        else:
            text = retrain_phrases.SCHEDULE_SET.format(
                cron=added.cron, timezone=timezone, next_run=_when(added)
            )
    await reply(update, context, text)


def _schedule_line(schedule: Schedule) -> str:
    return f"{schedule.cron} (next run {_when(schedule)})"


def _when(schedule: Schedule) -> str:
    return "never" if schedule.next_run is None else f"{schedule.next_run:%Y-%m-%d %H:%M %Z}"


# ---- /rollback -----------------------------------------------------------------------------------


@admins_only
async def rollback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    try:
        version = await bot_state(context).app.db.run(model_versions.rollback_version)
    except NoPreviousVersionError as exc:
        await reply(update, context, retrain_phrases.ROLLBACK_NONE.format(error=exc))
        return
    await reply(update, context, retrain_phrases.ROLLBACK_DONE.format(version=version.name))


# ---- /optout, /optin (everyone) ------------------------------------------------------------------


async def optout(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _set_opted_out(update, context, True)


async def optin(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _set_opted_out(update, context, False)


async def _set_opted_out(
    update: Update, context: ContextTypes.DEFAULT_TYPE, opted_out: bool
) -> None:
    user = update.effective_user
    if user is None or update.effective_message is None:
        return
    person = UserRef(PLATFORM, user.id, user.full_name)

    def store(session: Session) -> None:
        privacy.set_opted_out(session, conversations.get_or_create_user(session, person), opted_out)

    await bot_state(context).app.db.run(store)
    await reply(
        update, context, retrain_phrases.OPTOUT_DONE if opted_out else retrain_phrases.OPTIN_DONE
    )
