"""Build the PTB `Application` for an `App`: Bot API endpoint, flood control, every handler, and
the delivery machinery around it (inbox dispatcher, outbox sender, database outage watch).

The Application has no `Updater`: updates reach the handlers from the inbox (`dispatcher`),
where the polling loop (`polling`) or the webhook server (`webhook`) stored them first. Chats run
concurrently (up to `concurrent_updates`) and their decodes are micro-batched; a chat's updates
are handled one at a time, in order.
Outgoing requests go through `ChatFloodLimiter`, which paces them under Telegram's flood limits
and obeys a 429's `retry_after` for the chat it was about only.
"""

from __future__ import annotations

import os
import socket
import uuid

from telegram import BotCommand, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.admin_service import AdminService
from bot.app import App
from bot.telegram import admin, export_command, feedback, forget, handlers, retrain_commands
from bot.telegram.bot_api_request import QueuedHTTPXRequest, get_updates_request
from bot.telegram.delivery import OutboxSender
from bot.telegram.dispatcher import Dispatcher
from bot.telegram.error_handler import on_error
from bot.telegram.flood_control import ChatFloodLimiter
from bot.telegram.groups import COMMAND_FOR_THIS_BOT
from bot.telegram.outage import OutageWatch
from bot.telegram.shared_limits import build_limits
from bot.telegram.state import BotState, attach
from storage.faults import reconnect_after_faults

PUBLIC_COMMANDS = (
    BotCommand("start", "who I am and what I keep about you"),
    BotCommand("help", "what I can do"),
    BotCommand("reset", "start a new conversation"),
    BotCommand("forget", "delete everything stored about you"),
    BotCommand("export", "your messages and my replies, as a file"),
    BotCommand("optout", "never use my messages for training"),
    BotCommand("optin", "allow my messages for training again"),
)
ADMIN_COMMANDS = (
    BotCommand("status", "model version, uptime, counts"),
    BotCommand("stats", "usage numbers"),
    BotCommand("retrain", "retrain on the new chat logs now"),
    BotCommand("teach", "<context> => <reply>: teach a reply"),
    BotCommand("schedule", "show, set (<cron>) or stop (off) scheduled retraining"),
    BotCommand("rollback", "go back to the previous model version"),
)


def file_url(base_url: str) -> str:
    """The file endpoint next to `base_url`: `https://api.telegram.org/bot` -> `.../file/bot`."""
    head, sep, tail = base_url.rstrip("/").rpartition("/")
    return f"{head}/file/{tail}" if sep else f"{base_url}/file"


def worker_name() -> str:
    """This process's name on the leases it takes: host, pid and a random part (a restarted
    process with the same pid is another worker)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def build_application(app: App) -> Application:
    """The Application, handlers registered, the `App` and the delivery machinery in
    `bot_data` (see `state`)."""
    settings = app.settings.telegram
    if settings.token is None:
        raise ValueError("no Telegram token in the settings")
    timeout = settings.request_timeout_seconds
    limits = build_limits(app.settings)  # in Redis when CHATBOT_REDIS_URL is set
    builder = (
        ApplicationBuilder()
        .token(settings.token.get_secret_value())
        .base_url(settings.base_url)
        .base_file_url(file_url(settings.base_url))
        .rate_limiter(ChatFloodLimiter(limits.flood, max_retries=settings.flood_max_retries))
        .updater(None)
        .request(QueuedHTTPXRequest(settings.connection_pool_size, timeout))
        .get_updates_request(get_updates_request(timeout))
        .job_queue(None)
    )
    application = builder.build()
    watch = OutageWatch(max_delay=settings.database_retry_max_delay_seconds)
    reconnect_after_faults(app.db.engine)  # recover by itself once a read-only file is writable
    worker = worker_name()
    state = BotState(
        app=app,
        limiter=limits.users,
        admin=AdminService(app),
        watch=watch,
        dispatcher=Dispatcher(application, app.db, settings, watch, worker),
        sender=OutboxSender(application.bot, app.db, settings, watch, worker),
        exports=limits.exports,
    )
    attach(application.bot_data, state)
    add_handlers(application)
    return application


def add_handlers(application: Application) -> None:
    new_message = filters.UpdateType.MESSAGE  # edits and channel posts fall through to `ignored`
    command = new_message & COMMAND_FOR_THIS_BOT
    # Texts are deduplicated by the dialogue service as it stores them; commands are not stored.
    application.add_handler(
        MessageHandler(command & filters.COMMAND, handlers.drop_redelivered_command), group=-1
    )
    for name, callback in (
        ("start", handlers.start),
        ("help", handlers.help_command),
        ("reset", handlers.reset),
        ("forget", forget.ask),
        ("export", export_command.export),
        ("status", admin.status),
        ("stats", admin.stats),
        ("retrain", retrain_commands.retrain),
        ("teach", retrain_commands.teach),
        ("schedule", retrain_commands.schedule),
        ("rollback", retrain_commands.rollback),
        ("optout", retrain_commands.optout),
        ("optin", retrain_commands.optin),
    ):
        application.add_handler(CommandHandler(name, callback, filters=command))
    application.add_handler(CallbackQueryHandler(feedback.on_feedback, pattern=feedback.PATTERN))
    application.add_handler(CallbackQueryHandler(forget.on_answer, pattern=forget.PATTERN))
    application.add_handler(CallbackQueryHandler(_stale_button))
    application.add_handler(
        MessageHandler(
            new_message & filters.COMMAND & filters.ChatType.PRIVATE, handlers.unknown_command
        )
    )
    application.add_handler(
        MessageHandler(new_message & filters.TEXT & ~filters.COMMAND, handlers.on_text)
    )
    application.add_handler(
        MessageHandler(
            new_message & ~filters.TEXT & ~filters.StatusUpdate.ALL, handlers.on_not_text
        )
    )
    application.add_handler(TypeHandler(Update, handlers.ignored))
    application.add_error_handler(on_error)


async def _stale_button(update: Update, context: object) -> None:
    """A button we no longer understand (an old keyboard): stop the client's spinner."""
    if update.callback_query is not None:
        await update.callback_query.answer()
