"""`/metrics` for a process without an event loop (`chatbot scheduler`): prometheus-client's own
HTTP server, in a daemon thread, serving our registry."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server

from bot.observability import metrics

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @classmethod
    def start(cls, listen: str, port: int) -> MetricsServer:
        """Listening when it returns; OSError for a port in use or an unknown address."""
        server, thread = start_http_server(port, listen, registry=metrics.REGISTRY)
        log.info("metrics on http://%s:%s/metrics", listen, server.server_address[1])
        return cls(server, thread)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
