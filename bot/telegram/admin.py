"""/status and /stats, for the user ids in `CHATBOT_ADMIN_IDS` only.

Anyone else gets the fixed "not allowed" answer and nothing else happens: no query runs.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from telegram import Update
from telegram.ext import ContextTypes

from bot import answers
from bot.retraining.report import run_text
from bot.telegram.sending import send_text
from bot.telegram.state import PLATFORM, BotState, bot_state
from storage import model_versions, training_runs
from storage.stats import Counts

Handler = Callable[[Update, ContextTypes.DEFAULT_TYPE], Awaitable[None]]


def admins_only(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def guarded(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        user, message = update.effective_user, update.effective_message
        if message is None:
            return
        if user is None or not bot_state(context).is_admin(user.id):
            await message.reply_text(answers.NOT_ALLOWED)
            return
        await handler(update, context)

    return guarded


@admins_only
async def status(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, context, await status_text(bot_state(context)))


@admins_only
async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, context, await stats_text(bot_state(context)))


async def reply(update: Update, context: ContextTypes.DEFAULT_TYPE, text: str) -> None:
    """Answer in the update's chat, with the bot's send retries."""
    assert update.effective_chat is not None
    settings = bot_state(context).settings
    await send_text(
        context.bot,
        update.effective_chat.id,
        text,
        retries=settings.send_retries,
        delay_seconds=settings.send_retry_delay_seconds,
    )


async def status_text(state: BotState) -> str:
    loaded = state.app.models.current()
    registered = await state.app.db.run_read(model_versions.get_active_version)
    if registered is not None and registered.name == loaded.version:
        metrics, source = registered.metrics, "registry"
    else:
        metrics, source = loaded.responder.metrics, "checkpoint"
    totals = await state.service.stats()
    runs = await state.app.db.run_read(training_runs.list_runs, limit=1)
    return "\n".join(
        [
            f"Model: {loaded.version} ({source})",
            f"Metrics: {_metrics(metrics)}",
            f"Uptime: {_duration(state.uptime_seconds())}",
            f"Messages: {totals.messages:,} ({totals.user_messages:,} from people, "
            f"{totals.bot_replies:,} replies)",
            f"Users: {totals.users:,}",
            f"Last training run: {run_text(runs[0] if runs else None)}",
        ]
    )


async def stats_text(state: BotState) -> str:
    day_ago = datetime.now(UTC) - timedelta(days=1)
    total = await state.service.stats()
    telegram = await state.service.stats(platform=PLATFORM)
    last_day = await state.service.stats(platform=PLATFORM, since=day_ago)
    runs = await state.app.db.run_read(training_runs.list_runs, limit=1)
    last_run = (
        f"{runs[0].status}, started {runs[0].started_at:%Y-%m-%d %H:%M} UTC" if runs else "none"
    )
    return "\n".join(
        [
            _block("All platforms", total),
            _block("Telegram", telegram),
            _block("Telegram, last 24 h", last_day),
            f"Last training run: {last_run}",
        ]
    )


def _block(title: str, counts: Counts) -> str:
    latency = "n/a" if counts.mean_latency_ms is None else f"{counts.mean_latency_ms:.0f} ms"
    return (
        f"{title}:\n"
        f"  users {counts.users:,}, chats {counts.chats:,} ({counts.group_chats:,} groups)\n"
        f"  messages {counts.user_messages:,}, replies {counts.bot_replies:,}, "
        f"mean reply latency {latency}\n"
        f"  ratings 👍 {counts.feedback_up:,} / 👎 {counts.feedback_down:,}"
    )


def _metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "none recorded"
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    return json.dumps(shown, ensure_ascii=False, sort_keys=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m {secs}s" if days else f"{hours}h {minutes}m {secs}s"
