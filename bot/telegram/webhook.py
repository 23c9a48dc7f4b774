"""Webhook mode: a small HTTP server Telegram posts updates to, plus `GET /metrics`, `/healthz`
and `/readyz` (`bot.observability.endpoints`).

Our own server (PTB's `updater=None` recipe) rather than `run_webhook`, because PTB's has no
health endpoint. Tornado, because PTB's `webhooks` extra brings it. Every POST must carry the
secret token we gave Telegram in `setWebhook` (header `X-Telegram-Bot-Api-Secret-Token`); one
without it, or with another, is refused with 403 before its body is read as JSON. A body nested
deeper than any update is refused with 400 before it is parsed (the parser would recurse once per
level). An accepted update is stored in the inbox (`Dispatcher.accept`) before the POST is
answered: 200 means stored, and a process killed after that loses nothing. While the database
does not answer, the POST gets 503, and Telegram sends the update again later. Refused requests
are logged at most once a minute, with a count of those left out: anyone who can reach the port
could otherwise write two log lines per request.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import Application
from tornado.httpserver import HTTPServer
from tornado.log import access_log
from tornado.netutil import bind_sockets
from tornado.web import Application as TornadoApplication
from tornado.web import RequestHandler

from bot.observability.endpoints import PATHS, routes
from bot.observability.update_context import TRACKER
from bot.telegram.dispatcher import Dispatcher, received
from bot.telegram.status import bot_status
from storage.faults import is_transient

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# What Telegram accepts as a secret token: 1-256 characters A-Z, a-z, 0-9, _ and -.
SECRET_TOKEN_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
MAX_BODY_BYTES = 1 << 20
# An update nests about ten levels deep (update > message > reply_to_message > entities > ...).
MAX_JSON_DEPTH = 64
WARN_EVERY_SECONDS = 60.0

_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def nested_too_deep(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Do the arrays and objects of this JSON text nest deeper than `limit`? Counted without
    parsing (brackets inside strings do not count) and stopping at the first level too many, so
    100,000 opening brackets cost no more than 65."""
    depth = 0
    for byte in _JSON_STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > limit:
            return True
    return False


class ThrottledWarnings:
    """At most one warning per `every_seconds`; the next one written says how many were left out
    meanwhile, so a flood shows up in the log as one line a minute with its size."""

    def __init__(
        self,
        logger: logging.Logger,
        every_seconds: float = WARN_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.every_seconds = every_seconds
        self.clock = clock
        self.suppressed = 0
        self._quiet_until = float("-inf")

    def warning(self, message: str, *args: object) -> bool:
        """Log `message % args` unless one was logged less than `every_seconds` ago; whether it
        was logged."""
        now = self.clock()
        if now < self._quiet_until:
            self.suppressed += 1
            return False
        if self.suppressed:
            message += " (and %d more rejected requests not logged since the last such line)"
            args = (*args, self.suppressed)
        self.logger.warning(message, *args)
        self.suppressed = 0
        self._quiet_until = now + self.every_seconds
        return True


@dataclass(frozen=True)
class WebhookConfig:
    url: str  # the public HTTPS URL Telegram posts to
    secret_token: str
    listen: str = "127.0.0.1"
    port: int = 8080
    path: str | None = None  # served locally; default: the URL's path
    warn_every_seconds: float = WARN_EVERY_SECONDS  # about refused requests

    @property
    def route(self) -> str:
        path = self.path if self.path is not None else urlsplit(self.url).path
        return "/" + path.strip("/")


class WebhookServer:
    def __init__(
        self, application: Application, config: WebhookConfig, dispatcher: Dispatcher
    ) -> None:
        self.application = application
        self.config = config
        self.dispatcher = dispatcher
        self.port: int | None = None  # the bound port (useful with port 0)
        self._server: HTTPServer | None = None
        self.refusals = ThrottledWarnings(log, config.warn_every_seconds)
        self.status = bot_status(application, "webhook", self.not_accepting)

    async def start(self) -> None:
        if self.config.route in PATHS:
            raise ValueError(f"the webhook path cannot be {self.config.route}")
        handlers: list[Any] = [
            *routes(self.status, health=self.health),
            (re.escape(self.config.route), _UpdateHandler, {"server": self}),
        ]
        tornado_app = TornadoApplication(handlers, log_function=self._log_request)
        self._server = HTTPServer(tornado_app, max_body_size=MAX_BODY_BYTES)
        sockets = bind_sockets(self.config.port, self.config.listen)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        log.info("webhook server on %s:%s%s", self.config.listen, self.port, self.config.route)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    def _log_request(self, handler: RequestHandler) -> None:
        """Tornado's access log line, except that refused requests share the throttled
        warnings, and one the handler reported itself (a refusal, a 503 while the database is
        down: the outage watch logs that once) is not logged twice."""
        status, request = handler.get_status(), handler.request
        if request.path in PATHS and status != 500:  # probes every few seconds; 503 is an answer
            return
        summary = f"{request.method} {request.uri} ({request.remote_ip})"
        took_ms = 1000.0 * request.request_time()
        if status < 400:
            access_log.info("%d %s %.2fms", status, summary, took_ms)
        elif getattr(handler, "reported", False):
            return
        elif status >= 500:
            access_log.error("%d %s %.2fms", status, summary, took_ms)
        else:
            self.refusals.warning("webhook server refused a request: %d %s", status, summary)

    def secret_matches(self, offered: str | None) -> bool:
        expected = self.config.secret_token.encode()
        return offered is not None and hmac.compare_digest(offered.encode(), expected)

    def health(self) -> dict[str, Any]:
        """`/healthz` answers 200 while the process lives; this says more."""
        return {
            "status": "ok" if self.application.running else "stopping",
            "database": "down" if self.dispatcher.watch.down else "up",
        }

    def not_accepting(self) -> str | None:
        """None while updates are taken; else why not (for `/readyz`)."""
        if self._server is None:
            return "the webhook server is not listening"
        if not self.application.running:
            return "the bot is stopping"
        return None


class _UpdateHandler(RequestHandler):
    def initialize(self, server: WebhookServer) -> None:
        self.server = server
        self.reported = False  # a refusal this handler logged (or left out) itself

    async def post(self) -> None:
        if not self.server.secret_matches(self.request.headers.get(SECRET_HEADER)):
            self._refuse(
                403, "webhook request without the right secret token (%s)", self.request.remote_ip
            )
            return
        if nested_too_deep(self.request.body):
            self._refuse(
                400, "webhook request with JSON nested deeper than %d levels", MAX_JSON_DEPTH
            )
            return
        try:
            payload = json.loads(self.request.body)
            update = Update.de_json(payload, self.server.application.bot)
            if type(update.update_id) is not int:  # the library takes "x", 1.5 or true
                raise TypeError(f"update_id {update.update_id!r} is not a whole number")
        except Exception as exc:  # whatever JSON or the library cannot read (e.g. OverflowError)
            self._refuse(400, "webhook request with a body that is not an update: %s", exc)
            return
        stored = [received(update, payload)]
        TRACKER.arrived(stored)
        try:
            await self.server.dispatcher.accept(stored)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Not stored, so not confirmed: Telegram sends it again. The watch logged the outage.
            self.reported = True
            self.set_status(503)
            self.set_header("Retry-After", "1")
            self.finish()
            return
        self.set_status(200)

    def _refuse(self, status: int, message: str, *args: object) -> None:
        self.server.refusals.warning(message, *args)
        self.reported = True
        self.send_error(status)
