"""What handlers send goes through the outbox: queued (stored) now, sent by `bot.telegram.delivery`.

`reply()` queues a text for the update's chat; `reply_route()` tells the dialogue service how to
queue the answer to a message, in the transaction that stores it. Each message queued while an
update is handled carries the dispatcher's key for it, so handling the update again (after a
crash or a database outage) queues nothing twice.
"""

from __future__ import annotations

from typing import Any

from telegram import Chat, InlineKeyboardMarkup, Message, Update
from telegram.ext import ContextTypes

from bot.dialogue import ReplyRoute
from bot.telegram.feedback import feedback_keyboard
from bot.telegram.groups import is_group
from bot.telegram.state import PLATFORM, BotState, bot_state
from storage.outbox import OutgoingMessage


async def reply(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    text: str,
    *,
    reply_markup: InlineKeyboardMarkup | None = None,
    quote: bool | None = None,
) -> None:
    """Queue `text` for the update's chat. `quote`: show it as an answer to the update's message
    (default: in groups, as PTB's `reply_text` does)."""
    chat, message = update.effective_chat, update.effective_message
    if chat is None:
        return
    if quote is None:
        quote = chat.type != Chat.PRIVATE
    state = bot_state(context)
    await queue(
        state,
        chat.id,
        text,
        reply_markup=reply_markup,
        reply_to=message.message_id if quote and message is not None else None,
        dedupe_key=state.dispatcher.send_key(update),
    )


async def queue(
    state: BotState,
    chat_id: int,
    text: str,
    *,
    reply_markup: InlineKeyboardMarkup | None = None,
    reply_to: int | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Queue `text` for `chat_id` and wake the sender."""
    await state.service.queue(
        OutgoingMessage(
            PLATFORM,
            chat_id,
            text,
            reply_to_external_id=reply_to,
            reply_markup=None if reply_markup is None else reply_markup.to_dict(),
            dedupe_key=dedupe_key,
        )
    )
    state.sender.wake()


def reply_route(update: Update, message: Message) -> ReplyRoute:
    """How the dialogue service queues the answer to `message`: in its chat, with 👍/👎 under a
    stored reply, shown as an answer to the message in groups."""
    return ReplyRoute(
        chat_key=message.chat.id,
        reply_to=message.message_id if is_group(message.chat) else None,
        markup=_feedback_markup,
        source_key=f"update:{update.update_id}",
    )


def _feedback_markup(reply_id: int) -> dict[str, Any]:
    return feedback_keyboard(reply_id).to_dict()
