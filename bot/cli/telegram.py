"""`chatbot telegram`: run the Telegram bot (long polling; a webhook with `--webhook-url`).

The token comes from `CHATBOT_TELEGRAM_TOKEN` (environment or `.env`) and nowhere else: a command
line argument would show in `ps` and shell history. Missing or malformed, it is one line on
stderr and exit 2, never echoed. A database that does not answer or takes no writes (read-only)
is one line and exit 2 too: the bot stores every update before it confirms it. Both modes stop
cleanly on SIGINT and SIGTERM (exit 0). `/metrics`, `/healthz` and `/readyz` are served on the
webhook port, and on `--metrics-port` (CHATBOT_TELEGRAM__METRICS_PORT) in either mode.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bot.cli import arguments, telegram_setup
from bot.cli.errors import CliError
from config import Settings

if TYPE_CHECKING:  # the Telegram stack loads only when this command runs
    from bot.app import App
    from bot.telegram.one_time_setup import WebhookTarget
    from bot.telegram.redaction import RedactSecrets
    from bot.telegram.webhook import WebhookConfig

log = logging.getLogger(__name__)

# What BotFather issues: the bot's numeric id, a colon, 35 URL-safe characters.
TOKEN_FORMAT = re.compile(r"^\d{1,20}:[A-Za-z0-9_-]{30,100}$")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SECRET_ENV = "CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "telegram",
        help="run the Telegram bot",
        description="Serve the bot on Telegram: long polling by default, or a webhook with "
        "--webhook-url. Token: CHATBOT_TELEGRAM_TOKEN; another Bot API server: "
        "CHATBOT_TELEGRAM_BASE_URL; admins: CHATBOT_ADMIN_IDS.",
    )
    p.add_argument(
        "--webhook-url",
        metavar="URL",
        help="public HTTPS URL Telegram posts updates to (without it: long polling)",
    )
    p.add_argument("--listen", default="127.0.0.1", metavar="HOST", help="webhook server address")
    p.add_argument(
        "--port", type=arguments.port, default=8080, help="webhook server port (default 8080)"
    )
    p.add_argument(
        "--url-path", metavar="PATH", help="path served locally (default: the webhook URL's path)"
    )
    p.add_argument(
        "--secret-token",
        metavar="TOKEN",
        help=f"webhook secret Telegram must send (default: {SECRET_ENV}; prefer the variable, "
        "an argument shows in `ps`)",
    )
    p.add_argument(
        "--metrics-port",
        type=arguments.port,
        metavar="N",
        help="serve /metrics, /healthz and /readyz on this port (default: "
        "CHATBOT_TELEGRAM__METRICS_PORT; none: only the webhook server serves them)",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="HOST",
        help="address of that listener (default: CHATBOT_TELEGRAM__METRICS_LISTEN, 127.0.0.1)",
    )
    p.set_defaults(run=run, log_level=logging.INFO)
    telegram_setup.register(p)  # `chatbot telegram setup`


def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.telegram import redaction

    token = checked_token(settings)
    webhook = webhook_config(args, settings)
    status = status_address(args, settings)
    if status is not None:
        if webhook is not None and status[1] == webhook.port:
            raise CliError("--metrics-port must differ from the webhook port (which serves them)")
        _check_can_listen(*status)
    redactor = redaction.install([token, webhook.secret_token if webhook else ""])

    from bot.app import build_app

    app = build_app(settings)
    return asyncio.run(_serve(app, webhook, redactor, status))


def status_address(args: argparse.Namespace, settings: Settings) -> tuple[str, int] | None:
    """Where the metrics/health listener listens (`--metrics-port` or the setting), if at all."""
    port = args.metrics_port if args.metrics_port is not None else settings.telegram.metrics_port
    if port is None:
        return None
    return (args.metrics_listen or settings.telegram.metrics_listen, port)


def checked_token(settings: Settings) -> str:
    secret = settings.telegram.token
    if secret is None or not secret.get_secret_value().strip():
        raise CliError("no Telegram bot token: set CHATBOT_TELEGRAM_TOKEN (environment or .env)")
    token = secret.get_secret_value().strip()
    if not TOKEN_FORMAT.match(token):
        raise CliError(
            "CHATBOT_TELEGRAM_TOKEN is malformed: expected <bot id>:<secret> as BotFather issues "
            "it (digits, a colon, 35 letters, digits, '-' or '_')"
        )
    return token


def webhook_target(args: argparse.Namespace, settings: Settings) -> WebhookTarget | None:
    """`--webhook-url` and its secret (`--secret-token`, else `SECRET_ENV`), checked: one rule
    for a webhook replica and for `chatbot telegram setup`, which sets the webhook the replicas
    serve. None without `--webhook-url`."""
    from bot.telegram.one_time_setup import WebhookTarget
    from bot.telegram.webhook import SECRET_TOKEN_FORMAT

    if not args.webhook_url:
        return None
    url = urlsplit(args.webhook_url)
    if url.scheme not in ("https", "http") or not url.hostname:
        raise CliError(f"--webhook-url must be an absolute https:// URL, not {args.webhook_url!r}")
    configured = settings.telegram.webhook_secret_token
    secret = args.secret_token or (configured.get_secret_value() if configured else "")
    if not secret:
        raise CliError(f"a webhook needs a secret token: set {SECRET_ENV} or --secret-token")
    if not SECRET_TOKEN_FORMAT.match(secret):
        raise CliError("the webhook secret token must be 1-256 characters A-Z, a-z, 0-9, _ or -")
    return WebhookTarget(args.webhook_url, secret)


def webhook_config(args: argparse.Namespace, settings: Settings) -> WebhookConfig | None:
    from bot.observability.endpoints import PATHS
    from bot.telegram.webhook import WebhookConfig

    target = webhook_target(args, settings)
    if target is None:
        return None
    config = WebhookConfig(target.url, target.secret_token, args.listen, args.port, args.url_path)
    if config.route in PATHS:
        raise CliError(
            f"the webhook path cannot be {config.route} (metrics and health checks): use --url-path"
        )
    _check_can_listen(config.listen, config.port)
    return config


def _check_can_listen(host: str, port: int) -> None:
    """Before the model loads: the address is one of this machine's and the port is free. The
    sockets are closed at once; the webhook server binds its own (SO_REUSEADDR, as here)."""
    from tornado.netutil import bind_sockets

    try:
        sockets = bind_sockets(port, host)
    except OSError as exc:  # socket.gaierror (an unknown host) is one too
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    for sock in sockets:
        sock.close()


async def _serve(
    app: App,
    webhook: WebhookConfig | None,
    redactor: RedactSecrets,
    status: tuple[str, int] | None = None,
) -> int:
    from telegram.error import InvalidToken, TelegramError

    from bot.retraining.scheduler import RetrainScheduler
    from bot.roles import SchedulerRole, telegram_runs_schedules
    from bot.telegram import build_application, retrain_commands, running
    from storage.inbox import ensure_writable

    try:
        await asyncio.to_thread(ensure_writable, app.db)
    except BaseException:
        await app.close()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    # The scheduler role (retraining schedules, retention) is taken here with SQLite and left to
    # `chatbot scheduler` with PostgreSQL, unless retrain.run_scheduler says otherwise.
    role = (
        SchedulerRole(app.settings, app.db)
        if telegram_runs_schedules(app.settings, app.db)
        else None
    )
    scheduler = role.scheduler if role is not None else RetrainScheduler(app.settings, app.db)
    # A retraining in progress is cancelled (its run recorded failed), not waited for.
    stop_retraining = role.shutdown if role is not None else scheduler.shutdown
    try:
        application = build_application(app)
        retrain_commands.attach(application, scheduler.service, scheduler)
        if role is not None:
            role.start()  # leads at once unless another process does
        else:
            log.info(
                "retraining schedules and retention are left to `chatbot scheduler`, the webhook "
                "and command menus to `chatbot telegram setup` (retrain.run_scheduler=%s, %s)",
                app.settings.retrain.run_scheduler,
                app.db.dialect,
            )
        # The one-time setup (webhook, command menus) is made where this process is the whole
        # deployment; replicas leave it to `chatbot telegram setup` (bot.telegram.one_time_setup).
        listen, port = status if status is not None else ("127.0.0.1", None)
        async with running(
            application, webhook, setup=role is not None, status_port=port, status_listen=listen
        ):
            await stop.wait()
            log.info("stopping: finishing the updates in progress")
            await asyncio.to_thread(stop_retraining)
    except InvalidToken:
        raise CliError("Telegram refused the bot token: check CHATBOT_TELEGRAM_TOKEN") from None
    except TelegramError as exc:
        where = app.settings.telegram.base_url
        raise CliError(redactor.redact(f"Bot API at {where}: {exc}")) from None
    finally:
        await asyncio.to_thread(stop_retraining)
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        await app.close()
    log.info("stopped")
    return 0
