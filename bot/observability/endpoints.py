"""`GET /metrics`, `/healthz` and `/readyz` as Tornado handlers: served by the webhook server,
and in polling mode by a small listener of their own (`StatusListener`, `--metrics-port`).

`/healthz` answers 200 while the process lives (and its event loop turns); `/readyz` 200 or 503
with the checks as JSON (`readiness`); `/metrics` the registry in Prometheus' text format.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler

from bot.observability import metrics
from bot.observability.readiness import ReadinessProbe

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
PATHS = (METRICS_PATH, HEALTH_PATH, READY_PATH)


@dataclass
class Status:
    """What the three endpoints report on."""

    mode: str  # "polling" | "webhook"
    probe: ReadinessProbe
    before_scrape: Callable[[], None] = lambda: None  # e.g. set the model version gauge
    started: float = field(default_factory=time.monotonic)

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "mode": self.mode,
            "uptime_s": round(time.monotonic() - self.started, 1),
        }


def routes(status: Status, health: Callable[[], dict[str, Any]] | None = None) -> list[Any]:
    """Tornado routes of the three endpoints; `health` adds to `/healthz`'s JSON."""
    return [
        (METRICS_PATH, _MetricsHandler, {"status": status}),
        (HEALTH_PATH, _HealthHandler, {"status": status, "more": health}),
        (READY_PATH, _ReadyHandler, {"status": status}),
    ]


class _MetricsHandler(RequestHandler):
    def initialize(self, status: Status) -> None:
        self.status = status

    def get(self) -> None:
        self.status.before_scrape()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.write(generate_latest(metrics.REGISTRY))


class _HealthHandler(RequestHandler):
    def initialize(self, status: Status, more: Callable[[], dict[str, Any]] | None) -> None:
        self.status, self.more = status, more

    def get(self) -> None:
        self.write({**self.status.health(), **(self.more() if self.more else {})})


class _ReadyHandler(RequestHandler):
    def initialize(self, status: Status) -> None:
        self.status = status

    async def get(self) -> None:
        readiness = await self.status.probe.check()
        self.set_status(200 if readiness.ready else 503)
        self.write(readiness.to_json())


class StatusListener:
    """An HTTP server of the three endpoints alone (polling mode has no other)."""

    def __init__(self, status: Status, listen: str, port: int) -> None:
        self.status = status
        self.listen = listen
        self.requested_port = port
        self.port: int | None = None  # the bound port (useful with port 0)
        self._server: HTTPServer | None = None

    async def start(self) -> None:
        app = Application(routes(self.status), log_function=_quiet)
        self._server = HTTPServer(app)
        sockets = bind_sockets(self.requested_port, self.listen)
        self._server.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]
        log.info(
            "metrics, health and readiness on http://%s:%s (%s)",
            self.listen,
            self.port,
            ", ".join(PATHS),
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None


def _quiet(handler: RequestHandler) -> None:
    """Probes come every few seconds: only failures are worth a log line."""
    if handler.get_status() >= 500 and handler.request.path != READY_PATH:
        log.warning("%d %s", handler.get_status(), handler.request.uri)
