"""/status and /stats, for the user ids in `CHATBOT_ADMIN_IDS` only.

Anyone else gets the fixed "not allowed" answer and nothing else happens: no query runs. The
numbers come from the admin service (`bot.admin_service`); this module only formats and sends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from telegram import Update
from telegram.ext import ContextTypes

from bot import answers, command_replies
from bot.command_answer import CommandAnswer
from bot.telegram import outgoing
from bot.telegram.state import PLATFORM, bot_state
from storage.outbox import OutgoingMessage

R = TypeVar("R")
Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]


def admins_only(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user, message = update.effective_user, update.effective_message
        if message is None:
            return
        if user is None or not bot_state(context).is_admin(user.id):
            await outgoing.reply(update, context, answers.NOT_ALLOWED)
            return
        await handler(update, context)

    return guarded


@admins_only
async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    report = await bot_state(context).admin.status()
    await reply(update, context, command_replies.status_text(report))


@admins_only
async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    report = await bot_state(context).admin.stats(PLATFORM)
    await reply(update, context, command_replies.stats_text(report))


async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
    """Answer in the update's chat (through the outbox), not shown as an answer to the command."""
    await outgoing.reply(update, context, text, quote=False)


def answer_with(
    update: Update, context: ContextTypes.DEFAULT_TYPE, text: Callable[[R], str]
) -> CommandAnswer[R] | None:
    """The answer `reply` would queue, for the admin service to queue with the command's change
    (`bot.command_answer`); None outside a chat."""
    chat = update.effective_chat
    if chat is None:
        return None
    key = bot_state(context).dispatcher.send_key(update)
    return CommandAnswer(OutgoingMessage(PLATFORM, chat.id, "", dedupe_key=key), text)
