"""The one error handler: log the exception, and tell the person something went wrong.

Handlers deal with what they expect (a reply Telegram would not take, a rate limit); anything
that reaches this handler is a bug or an outage. It must never raise itself, so the apology is
best effort.
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Forbidden, TelegramError
from telegram.ext import ContextTypes

from bot import answers

log = logging.getLogger(__name__)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    where = f" in update {update.update_id}" if isinstance(update, Update) else ""
    log.error("error while handling an update%s", where, exc_info=error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return  # e.g. a failed poll: nobody to tell
    if isinstance(error, Forbidden):
        return  # the chat does not take our messages: an apology would fail the same way
    try:
        await context.bot.send_message(update.effective_chat.id, answers.APOLOGY)
    except TelegramError as exc:
        log.warning("could not send the apology to chat %s: %s", update.effective_chat.id, exc)
