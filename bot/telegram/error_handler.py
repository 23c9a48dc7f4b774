"""The one error handler: log the exception, and tell the person something went wrong.

Handlers deal with what they expect (a rate limit, a stale button); anything that reaches this
handler is a bug or an outage. A database that does not answer is an outage: no apology and no
traceback (the outage watch logs it once), and no further handler runs for the update; the
dispatcher handles it again once the database is back. For a bug, the apology is best effort:
this handler must never raise (other than to stop the update's handlers).
"""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Forbidden, TelegramError
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot import answers
from bot.telegram.state import bot_state
from storage.faults import is_transient

log = logging.getLogger(__name__)


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    if error is not None and is_transient(error):
        bot_state(context).dispatcher.database_fault(update, error)
        raise ApplicationHandlerStop  # nothing more for this update now: it is handled again
    where = f" in update {update.update_id}" if isinstance(update, Update) else ""
    log.error("error while handling an update%s", where, exc_info=error)
    if not isinstance(update, Update) or update.effective_chat is None:
        return  # e.g. a failed poll: nobody to tell
    if isinstance(error, Forbidden):
        return  # the chat does not take our messages: an apology would fail the same way
    try:
        await context.bot.send_message(update.effective_chat.id, answers.APOLOGY)
    except TelegramError as exc:
        log.warning(
            "could not send the apology: %s", exc, extra={"chat_id": update.effective_chat.id}
        )
