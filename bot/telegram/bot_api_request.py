"""HTTP to the Bot API: PTB's `HTTPXRequest`, with requests waiting their turn in a semaphore.

httpx keeps the requests that wait for a connection in its pool's own queue, and each time a
request takes or gives back a connection the pool rescans every waiting request against every
connection (checking each connection's socket as it goes): quadratic in the traffic a bot under
load has in flight (sends, "typing…"). Here at most `connection_pool_size` requests are inside
httpx at once, so its queue stays empty; the rest wait in an `asyncio.Semaphore`, first come
first served, at a constant cost per request. Waiting here counts against the pool timeout, as
waiting in httpx's pool would: past it the request is not sent (`TimedOut`, as PTB raises).
"""

from __future__ import annotations

import asyncio

from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import TimedOut
from telegram.request import HTTPXRequest, RequestData


class QueuedHTTPXRequest(HTTPXRequest):
    def __init__(self, connection_pool_size: int, timeout: float) -> None:
        super().__init__(
            connection_pool_size=connection_pool_size,
            connect_timeout=timeout,
            read_timeout=timeout,
            write_timeout=timeout,
            pool_timeout=timeout,
        )
        self._turns = asyncio.Semaphore(connection_pool_size)
        self._pool_timeout = timeout

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = HTTPXRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        wait = self._pool_timeout if isinstance(pool_timeout, DefaultValue) else pool_timeout
        try:
            async with asyncio.timeout(wait):
                await self._turns.acquire()
        except TimeoutError:
            raise TimedOut(
                "Pool timeout: every connection to the Bot API stayed busy; the request was not "
                "sent"
            ) from None
        try:
            return await super().do_request(
                url,
                method,
                request_data,
                read_timeout=read_timeout,
                write_timeout=write_timeout,
                connect_timeout=connect_timeout,
                pool_timeout=pool_timeout,
            )
        finally:
            self._turns.release()


def get_updates_request(timeout: float) -> HTTPXRequest:
    """The connection long polling uses (getUpdates, one at a time), as PTB builds it."""
    return HTTPXRequest(connection_pool_size=1, connect_timeout=timeout, read_timeout=timeout)
