"""Retraining from Telegram: admins' /retrain, /teach, /schedule, /rollback; everyone's /optout
and /optin.

Admin commands go through `admins_only`: anyone else gets the fixed "not allowed" answer and
nothing happens. The use cases are the admin and dialogue services' (`bot.admin_service`,
`bot.dialogue`); this module parses the command, calls them and formats the result. Nothing here
blocks the event loop: the services work in worker threads, the training itself in its own
process, so the bot keeps answering during a run. A /retrain answers at once (started, already
running, too few pairs) and reports the result to every admin when the run ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from telegram import Update
from telegram.ext import Application, ContextTypes

from bot import command_replies
from bot.admin_service import AdminService, parse_teaching
from bot.dialogue import ChatRef, UserRef
from bot.retraining import report
from bot.retraining.errors import InvalidScheduleError
from bot.retraining.job import PreparedRun
from bot.retraining.scheduler import RetrainScheduler, Schedule
from bot.retraining.service import RetrainService
from bot.telegram import retrain_phrases
from bot.telegram.admin import admins_only, answer_with, reply
from bot.telegram.groups import chat_kind
from bot.telegram.outgoing import queue
from bot.telegram.state import PLATFORM, BotState, bot_state, bot_state_of

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^/\w+(@\w+)?\s*")


def attach(
    application: Application[Any, Any, Any, Any, Any, Any],
    service: RetrainService,
    scheduler: RetrainScheduler | None = None,
) -> None:
    """Share a process's retraining service (and running scheduler) with the handlers."""
    bot_state_of(application).admin.use_retraining(service, scheduler)


def _argument(update: Update) -> str:
    """The text after `/command` (or `/command@bot`)."""
    message = update.effective_message
    text = message.text if message is not None and message.text else ""
    return _COMMAND.sub("", text, count=1).strip()


# ---- /retrain ------------------------------------------------------------------------------------


@admins_only
async def retrain(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    force = _argument(update).lower() == "force"
    admin = bot_state(context).admin
    start = await admin.start_retrain("telegram", force)
    await reply(update, context, command_replies.retrain_start_text(start))
    if start.prepared is not None:
        context.application.create_task(
            _complete(context, admin, start.prepared),
            update=update,
            name=f"retrain-{start.prepared.run.id}",
        )


async def _complete(
    context: ContextTypes.DEFAULT_TYPE, admin: AdminService, prepared: PreparedRun
) -> None:
    outcome = await asyncio.to_thread(admin.complete_retrain, prepared)
    await tell_admins(bot_state(context), context, report.outcome_text(outcome))


async def tell_admins(state: BotState, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
    for admin_id in state.settings.admin_ids:
        await queue(state, admin_id, text)


# ---- /teach --------------------------------------------------------------------------------------


@admins_only
async def teach(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    taught = parse_teaching(_argument(update))
    if taught is None:
        await reply(update, context, command_replies.TEACH_USAGE)
        return
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    state = bot_state(context)
    await state.admin.teach(  # the answer is queued with the pair: taught once, however it ends
        ChatRef(PLATFORM, message.chat.id, chat_kind(message.chat), message.chat.title),
        UserRef(PLATFORM, user.id, user.full_name),
        taught,
        answer_with(update, context, command_replies.teach_text),
    )
    state.sender.wake()


# ---- /schedule -----------------------------------------------------------------------------------


@admins_only
async def schedule(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    argument = _argument(update)
    scheduler = bot_state(context).admin.scheduler
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
    state = bot_state(context)  # the answer is queued with the switch: rolled back once
    await state.admin.rollback(answer_with(update, context, command_replies.rollback_text))
    state.sender.wake()


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
    await bot_state(context).service.set_opted_out(person, opted_out)
    await reply(update, context, command_replies.opt_out_text(opted_out))
