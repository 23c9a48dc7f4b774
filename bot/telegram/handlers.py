"""Messages and the plain commands: small async callbacks in PTB's style.

The path of a text message: is it meant for the bot (`groups`)? If not, store it as dialogue
between people and stop. Within the person's rate limit? If not, "slow down" once. Otherwise
let the dialogue service store the message, generate the reply (with "typing…" shown if that
takes a moment) and store it together with the reply queued in the outbox, with 👍/👎; the
outbox sender (`delivery`) sends it and records Telegram's id of it. Everything else the bot
says is queued in the outbox too (`outgoing.reply`).
"""

from __future__ import annotations

import logging

from telegram import Message, Update, User
from telegram.ext import ApplicationHandlerStop, ContextTypes

from bot import answers
from bot.dialogue import Incoming, storable
from bot.observability import outcomes
from bot.telegram import phrases
from bot.telegram.groups import chat_kind, is_addressed, is_group, without_mention
from bot.telegram.outgoing import reply, reply_route
from bot.telegram.rate_limit import Decision
from bot.telegram.sending import typing
from bot.telegram.state import PLATFORM, BotState, bot_state

log = logging.getLogger(__name__)


async def drop_redelivered_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Runs before every command (handler group -1): a command Telegram delivers a second time
    (the bot restarted before acknowledging it, a webhook retried) is answered only once; the
    same update handled again because the process that claimed it died is answered then."""
    message = update.message
    if message is None:
        return
    state = bot_state(context)
    memo = state.dispatcher.memo(update)  # handled again after an outage: our claim stands
    if "first_delivery" not in memo:  # taken over after a crash: the claim names this update
        memo["first_delivery"] = await state.service.first_delivery(
            PLATFORM,
            message.chat.id,
            message.message_id,
            update_id=update.update_id,
            answer_key=state.dispatcher.answer_key(update),
        )
        outcomes.command_delivery(memo["first_delivery"])
    if not memo["first_delivery"]:
        raise ApplicationHandlerStop


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None:
        return
    name = storable(user.first_name).strip() if user is not None else ""
    await reply(
        update, context, phrases.START.format(name=name or "there", bot=context.bot.username)
    )


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None:
        return
    admin = user is not None and bot_state(context).is_admin(user.id)
    await reply(update, context, phrases.HELP + (phrases.ADMIN_HELP if admin else ""))


async def reset(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    if message is None:
        return
    await bot_state(context).service.reset(PLATFORM, message.chat.id)
    await reply(update, context, phrases.RESET)


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.message is not None:
        await reply(update, context, phrases.UNKNOWN_COMMAND)


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.message, update.effective_user
    if message is None or message.text is None or user is None or user.is_bot:
        return
    state = bot_state(context)
    if not is_addressed(message, context.bot):
        await state.service.record(incoming(message, user, message.text))
        return
    if not await _admitted(state, update, context, message, user):
        return
    text = without_mention(message, context.bot) if is_group(message.chat) else message.text
    async with typing(context.bot, message.chat.id, state.settings.typing_delay_seconds):
        # Stored with the reply queued (or, delivered before, the reply still owed queued).
        answer = await state.service.respond(
            incoming(message, user, text), reply_route(update, message)
        )
    outcomes.answered(answer)
    state.sender.wake()


async def on_not_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stickers, photos, voice, documents, locations…: a short note where the bot is addressed."""
    message, user = update.message, update.effective_user
    if message is None or user is None or user.is_bot or not is_addressed(message, context.bot):
        return
    state = bot_state(context)
    if await _admitted(state, update, context, message, user):
        await reply(update, context, answers.NOT_TEXT, quote=is_group(message.chat))


async def ignored(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Edited messages, channel posts, membership changes, commands for other bots…"""
    log.debug("ignored update %s (%s)", update.update_id, _kind(update))


def incoming(message: Message, user: User, text: str) -> Incoming:
    chat = message.chat
    return Incoming(
        platform=PLATFORM,
        chat_id=chat.id,
        user_id=user.id,
        text=text,
        user_name=user.full_name,
        chat_kind=chat_kind(chat),
        chat_title=chat.title,
        message_id=message.message_id,
    )


async def _admitted(
    state: BotState,
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    message: Message,
    user: User,
) -> bool:
    memo = state.dispatcher.memo(update)  # handled again after an outage: counted once
    if "rate_limit" not in memo:  # by another replica after a crash: the event is counted once
        memo["rate_limit"] = await state.limiter.check(user.id, event=str(update.update_id))
        outcomes.rate_limit_decision(memo["rate_limit"])
    decision: Decision = memo["rate_limit"]
    if decision is Decision.WARN:
        await reply(update, context, answers.SLOW_DOWN, quote=is_group(message.chat))
    return decision is Decision.ALLOW


def _kind(update: Update) -> str:
    """The update's type, e.g. "edited_message" (the one field besides `update_id`)."""
    return next((key for key in update.to_dict() if key != "update_id"), "empty")
