"""Webhook mode: a small HTTP server Telegram posts updates to, plus `GET /healthz`.

Our own server (PTB's `updater=None` recipe) rather than `run_webhook`, because PTB's has no
health endpoint. Tornado, because PTB's `webhooks` extra brings it. Every POST must carry the
secret token we gave Telegram in `setWebhook` (header `X-Telegram-Bot-Api-Secret-Token`); one
without it, or with another, is refused with 403 before its body is read as JSON. Accepted
updates go into the Application's update queue, exactly where polling would put them.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from telegram import Update
from telegram.ext import Application
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application as TornadoApplication
from tornado.web import RequestHandler

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_PATH = "/healthz"
# What Telegram accepts as a secret token: 1-256 characters A-Z, a-z, 0-9, _ and -.
SECRET_TOKEN_FORMAT = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class WebhookConfig:
    url: str  # the public HTTPS URL Telegram posts to
    secret_token: str
    listen: str = "127.0.0.1"
    port: int = 8080
    path: str | None = None  # served locally; default: the URL's path

    @property
    def route(self) -> str:
        path = self.path if self.path is not None else urlsplit(self.url).path
        return "/" + path.strip("/")


class WebhookServer:
    def __init__(self, application: Application, config: WebhookConfig) -> None:
        self.application = application
        self.config = config
        self.port: int | None = None  # the bound port (useful with port 0)
        self._server: HTTPServer | None = None
        self._started = time.monotonic()

    async def start(self) -> None:
        if self.config.route == HEALTH_PATH:
            raise ValueError(f"the webhook path cannot be {HEALTH_PATH}")
        routes: list[Any] = [
            (HEALTH_PATH, _HealthHandler, {"server": self}),
            (re.escape(self.config.route), _UpdateHandler, {"server": self}),
        ]
        self._server = HTTPServer(TornadoApplication(routes), max_body_size=MAX_BODY_BYTES)
        sockets = bind_sockets(self.config.port, self.config.listen)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        self._started = time.monotonic()
        log.info("webhook server on %s:%s%s", self.config.listen, self.port, self.config.route)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None

    def secret_matches(self, offered: str | None) -> bool:
        expected = self.config.secret_token.encode()
        return offered is not None and hmac.compare_digest(offered.encode(), expected)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.application.running else "stopping",
            "mode": "webhook",
            "uptime_s": round(time.monotonic() - self._started, 1),
        }


class _UpdateHandler(RequestHandler):
    def initialize(self, server: WebhookServer) -> None:
        self.server = server

    async def post(self) -> None:
        if not self.server.secret_matches(self.request.headers.get(SECRET_HEADER)):
            log.warning(
                "webhook request without the right secret token (%s)", self.request.remote_ip
            )
            self.send_error(403)
            return
        try:
            update = Update.de_json(json.loads(self.request.body), self.server.application.bot)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("webhook request with a body that is not an update: %s", exc)
            self.send_error(400)
            return
        await self.server.application.update_queue.put(update)
        self.set_status(200)


class _HealthHandler(RequestHandler):
    def initialize(self, server: WebhookServer) -> None:
        self.server = server

    def get(self) -> None:
        health = self.server.health()
        self.set_status(200 if health["status"] == "ok" else 503)
        self.write(health)
