"""/forget: ask first (inline Yes/No), then delete everything stored about the person and say
how much went, and what happens to models already trained on their messages.

The buttons name the user who asked (`forget:yes:<user id>`): in a group only that person's press
counts, so nobody can erase someone else. After an answer the buttons are removed, which makes a
second press on the same question impossible.
"""

from __future__ import annotations

import logging
import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot import command_replies
from bot.telegram import phrases
from bot.telegram.outgoing import reply
from bot.telegram.state import PLATFORM, bot_state

log = logging.getLogger(__name__)

PATTERN = re.compile(r"^forget:(yes|no):(\d+)$")


def confirm_keyboard(user_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(phrases.FORGET_YES, callback_data=f"forget:yes:{user_id}"),
                InlineKeyboardButton(phrases.FORGET_NO, callback_data=f"forget:no:{user_id}"),
            ]
        ]
    )


async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    await reply(update, context, phrases.FORGET_ASK, reply_markup=confirm_keyboard(user.id))


async def on_answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    match = PATTERN.match(query.data)
    assert match is not None
    if int(match[2]) != query.from_user.id:
        await query.answer(phrases.NOT_YOURS, show_alert=True)
        return
    state = bot_state(context)
    if match[1] == "yes":
        result = await state.service.forget(PLATFORM, query.from_user.id)
        done = command_replies.forgotten_text(result)
    else:
        done = phrases.FORGET_CANCELLED
    await query.answer()
    try:
        await query.edit_message_reply_markup(None)
    except BadRequest as exc:  # already removed (a double press): the answer below still goes
        log.debug("could not remove the /forget buttons: %s", exc)
    if query.message is not None:
        await reply(update, context, done, quote=False)
