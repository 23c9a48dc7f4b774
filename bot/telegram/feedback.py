"""👍/👎 under every bot reply, and what a press does.

The buttons carry our own id of the stored reply (`fb:+1:<reply_id>`), so a press needs no
lookup of Telegram's message id. A press stores the vote (one per user and reply; a second press
changes it), acknowledges the callback so the client stops its spinner, and in a private chat
marks the chosen button (in a group the buttons are shared, so they stay as they are).
"""

from __future__ import annotations

import logging
import re

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import ContextTypes

from bot.dialogue import ChatRef, UserRef
from bot.telegram import phrases
from bot.telegram.groups import chat_kind, is_group
from bot.telegram.state import PLATFORM, bot_state

log = logging.getLogger(__name__)

UP, DOWN = 1, -1
# At most 64 digits: Telegram's own limit on callback data, so nothing longer came from our buttons.
PATTERN = re.compile(r"^fb:([+-]1):(\d{1,64})$")
_LABELS = {UP: "👍", DOWN: "👎"}


def feedback_keyboard(reply_id: int, chosen: int | None = None) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(
            f"{label} ✓" if value == chosen else label, callback_data=f"fb:{value:+d}:{reply_id}"
        )
        for value, label in _LABELS.items()
    ]
    return InlineKeyboardMarkup([buttons])


async def on_feedback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None  # the handler's pattern matched
    match = PATTERN.match(query.data)
    assert match is not None
    value, reply_id = int(match[1]), int(match[2])
    message = query.message
    if message is None:  # a button under an inline-mode message: not ours
        await query.answer()
        return
    user = query.from_user
    vote = await bot_state(context).service.feedback(
        ChatRef(PLATFORM, message.chat.id, chat_kind(message.chat), message.chat.title),
        UserRef(PLATFORM, user.id, user.full_name),
        reply_id,
        value,
    )
    if vote is None:
        await query.answer(phrases.FEEDBACK_GONE)
        return
    await query.answer(phrases.FEEDBACK_THANKS[value] if vote.changed else phrases.FEEDBACK_SAME)
    if vote.changed and not is_group(message.chat):
        try:
            await query.edit_message_reply_markup(feedback_keyboard(reply_id, chosen=value))
        except BadRequest as exc:  # e.g. the message is too old to edit: the vote is stored
            log.debug("could not mark the vote on message %s: %s", message.message_id, exc)
