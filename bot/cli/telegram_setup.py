"""`chatbot telegram setup`: the one-time Bot API calls of a deployment (`setWebhook` when
`--webhook-url` is given, `setMyCommands`; see `bot.telegram.one_time_setup`).

Webhook replicas on PostgreSQL make neither call at start: run this once per deployment, and
again after changing the webhook URL, its secret or the admins. It is idempotent (a second run
sets the same values). One line per action on stdout; a Bot API error (a revoked token: 401,
Telegram unreachable) is one line on stderr and exit 2. It needs no database and no model.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import TYPE_CHECKING

from bot.cli.errors import CliError
from config import Settings

if TYPE_CHECKING:  # the Telegram stack loads only when this command runs
    from bot.telegram.one_time_setup import WebhookTarget
    from bot.telegram.redaction import RedactSecrets

NO_WEBHOOK = "webhook not set: no --webhook-url given (a long-polling bot needs none)"


def register(telegram_parser: argparse.ArgumentParser) -> None:
    """`setup` as a subcommand of `chatbot telegram` (which still runs the bot without one)."""
    from bot.cli.telegram import SECRET_ENV

    commands = telegram_parser.add_subparsers(
        dest="telegram_command",
        metavar="[COMMAND]",
        title="commands",
        description="without one, `chatbot telegram` runs the bot",
    )
    p = commands.add_parser(
        "setup",
        help="one-time Bot API setup of a deployment: the webhook and the command menus",
        description="Set the webhook (with --webhook-url; secret: "
        f"{SECRET_ENV} or --secret-token) and the command menus, once per deployment: webhook "
        "replicas on PostgreSQL do not set them when they start. Idempotent; one line per action; "
        "a Bot API error is one line and exit 2.",
    )
    p.add_argument(
        "--webhook-url",
        metavar="URL",
        help="the public HTTPS URL Telegram posts updates to, as the replicas are started with "
        "(without it: no webhook is set)",
    )
    p.add_argument(
        "--secret-token",
        metavar="TOKEN",
        help=f"webhook secret Telegram must send (default: {SECRET_ENV}; prefer the variable, "
        "an argument shows in `ps`)",
    )
    p.set_defaults(run=run, log_level=logging.WARNING)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.cli.telegram import checked_token, webhook_target
    from bot.telegram import redaction

    token = checked_token(settings)
    webhook = webhook_target(args, settings)
    redactor = redaction.install([token, webhook.secret_token if webhook else ""])
    asyncio.run(_set_up(settings, token, webhook, redactor))
    return 0


async def _set_up(
    settings: Settings, token: str, webhook: WebhookTarget | None, redactor: RedactSecrets
) -> None:
    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError
    from telegram.request import HTTPXRequest

    from bot.telegram.application import file_url
    from bot.telegram.one_time_setup import publish_commands, set_webhook

    where = settings.telegram.base_url
    timeout = settings.telegram.request_timeout_seconds
    bot = Bot(
        token,
        base_url=where,
        base_file_url=file_url(where),
        request=HTTPXRequest(
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            pool_timeout=timeout,
        ),
    )
    try:
        async with bot:  # getMe first: a refused token fails here, before anything is set
            print(await set_webhook(bot, webhook) if webhook is not None else NO_WEBHOOK)
            for line in await publish_commands(bot, settings.telegram.admin_ids, strict=True):
                print(line)
    except InvalidToken:
        raise CliError("Telegram refused the bot token: check CHATBOT_TELEGRAM_TOKEN") from None
    except TelegramError as exc:
        raise CliError(redactor.redact(f"Bot API at {where}: {exc}")) from None
