"""The Bot API calls a deployment makes once, not every replica at every start: the webhook
(`setWebhook`: where Telegram posts updates, and the secret it must send) and the command menus
(`setMyCommands`: everyone's, and each admin's in their private chat with the bot). Both are
idempotent: made again with the same values, they change nothing.

Who makes them: `chatbot telegram setup` (once per deployment, and again after the webhook URL,
its secret or the admins change), and `chatbot telegram` at start where it is the whole
deployment: where it takes the scheduler role (SQLite, or `retrain.run_scheduler=always`; see
`bot.roles`). Webhook replicas on PostgreSQL do not: N replicas would make N identical calls at
every start, each of which Telegram counts against the bot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import Bot, BotCommandScopeChat, Update
from telegram.error import BadRequest, TelegramError

from bot.telegram.application import ADMIN_COMMANDS, PUBLIC_COMMANDS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookTarget:
    url: str  # the public HTTPS URL Telegram posts updates to
    secret_token: str  # what Telegram sends in X-Telegram-Bot-Api-Secret-Token


async def set_webhook(bot: Bot, target: WebhookTarget) -> str:
    """Point Telegram at the webhook; what was done, in one line."""
    await bot.set_webhook(
        url=target.url, secret_token=target.secret_token, allowed_updates=Update.ALL_TYPES
    )
    return f"webhook set: {target.url} (all update types, with the secret token)"


async def publish_commands(
    bot: Bot, admin_ids: Sequence[int], *, strict: bool = False
) -> list[str]:
    """The command menus; what was done, one line per menu.

    A bot starting (not `strict`) logs a refused menu and goes on: it works without one. The
    setup command (`strict`) lets the refusal raise, except for an admin's chat that Telegram
    does not know (they never opened a chat with the bot), which is one of its lines."""
    lines: list[str] = []
    try:
        await bot.set_my_commands(PUBLIC_COMMANDS)
    except TelegramError as exc:
        if strict:
            raise
        log.warning("could not set the command menu: %s", exc)
        return lines
    lines.append(f"command menu set: {len(PUBLIC_COMMANDS)} commands for everyone")
    admin_menu = PUBLIC_COMMANDS + ADMIN_COMMANDS
    for admin_id in admin_ids:
        try:
            await bot.set_my_commands(admin_menu, scope=BotCommandScopeChat(admin_id))
        except TelegramError as exc:
            if strict and not isinstance(exc, BadRequest):
                raise
            log.info("no admin command menu for %s: %s", admin_id, exc)
            lines.append(f"admin command menu not set for {admin_id}: {exc}")
        else:
            lines.append(f"admin command menu set for {admin_id}: {len(admin_menu)} commands")
    return lines
