"""Requests to the Bot API wait their turn outside httpx: at most `connection_pool_size` in flight,
the rest queued first come first served, and one that waits past the pool timeout is not sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from telegram.error import TimedOut

from bot.telegram.bot_api_request import QueuedHTTPXRequest
from tests.support.waiting import wait_until_async
from tests.telegram import processes


@dataclass
class SlowServer:
    """Answers every POST once `release` is set; counts requests in progress and received."""

    url: str = ""
    release: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0
    most_in_flight: int = 0
    received: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.received.append(request.match_info["n"])
        try:
            await self.release.wait()
            return web.json_response({"ok": True, "result": True})
        finally:
            self.in_flight -= 1


@pytest.fixture
async def server() -> AsyncIterator[SlowServer]:
    slow = SlowServer()
    app = web.Application()
    app.router.add_post("/{n}", slow.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = processes.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    slow.url = f"http://127.0.0.1:{port}"
    yield slow
    slow.release.set()
    await runner.cleanup()


async def test_at_most_the_pool_size_is_in_flight_and_the_rest_go_in_order(
    server: SlowServer,
) -> None:
    request = QueuedHTTPXRequest(connection_pool_size=2, timeout=10.0)
    await request.initialize()
    try:
        calls = []
        for n in range(6):
            calls.append(asyncio.create_task(request.post(f"{server.url}/{n}")))
            await asyncio.sleep(0)  # queued in this order
        await wait_until_async(lambda: server.in_flight == 2, what="two requests in flight")
        assert server.received == ["0", "1"]  # the others wait here, not in httpx's pool
        server.release.set()
        assert await asyncio.gather(*calls) == [True] * 6
        assert server.most_in_flight == 2
        assert server.received[:2] == ["0", "1"] and sorted(server.received) == list("012345")
    finally:
        await request.shutdown()


async def test_a_request_that_waits_past_the_pool_timeout_is_not_sent(
    server: SlowServer,
) -> None:
    request = QueuedHTTPXRequest(connection_pool_size=1, timeout=10.0)
    await request.initialize()
    try:
        first = asyncio.create_task(request.post(f"{server.url}/first"))
        await wait_until_async(lambda: server.in_flight == 1, what="the first request")
        with pytest.raises(TimedOut, match="not sent"):
            await request.post(f"{server.url}/second", pool_timeout=0.2)
        server.release.set()
        assert await first is True
        assert server.received == ["first"]
    finally:
        await request.shutdown()
