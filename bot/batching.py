"""Micro-batching: requests from many chats that arrive within a short window share one decode.

On a small CPU one batched decode of 32 contexts costs little more than one decode of a single
context, so collecting requests for a few milliseconds multiplies throughput. Decoding runs in a
worker thread; the event loop only queues requests and resolves futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from bot.model_slot import LoadedModel, ModelSlot
from bot.observability import metrics
from nlp.responder import Context, Reply


@dataclass(frozen=True)
class Generated:
    reply: Reply
    version: str
    latency_ms: float  # from the request joining the queue to its reply being decoded
    batch_size: int


class MicroBatcher:
    def __init__(self, models: ModelSlot, window_ms: float = 5.0, max_batch: int = 32) -> None:
        self.models = models
        self.window_s = window_ms / 1000.0
        self.max_batch = max(1, max_batch)
        self._queue: asyncio.Queue[tuple[Context, float, asyncio.Future[Generated]]] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def generate(self, context: Context) -> Generated:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run(), name="micro-batcher")
        assert self._queue is not None
        future: asyncio.Future[Generated] = asyncio.get_running_loop().create_future()
        await self._queue.put((context, time.perf_counter(), future))
        return await future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            deadline = time.perf_counter() + self.window_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    # Whatever queued up while the last batch was decoding joins without waiting.
                    while len(batch) < self.max_batch and not queue.empty():
                        batch.append(queue.get_nowait())
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            await self._decode(batch)

    async def _decode(self, batch: list[tuple[Context, float, asyncio.Future[Generated]]]) -> None:
        try:
            model, replies = await asyncio.to_thread(
                _generate, self.models, [c for c, _, _ in batch]
            )
        except Exception as exc:  # every waiter gets the error; the worker carries on
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        done = time.perf_counter()
        for (_, queued, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(
                    Generated(reply, model.version, (done - queued) * 1000.0, len(batch))
                )


def _generate(models: ModelSlot, contexts: list[Context]) -> tuple[LoadedModel, list[Reply]]:
    """In the worker thread: one model snapshot (a registry check may load a new one) per batch."""
    model = models.refresh_if_due()
    with metrics.DECODE_SECONDS.time():
        replies = model.responder.generate(contexts)
    metrics.BATCH_SIZE.observe(len(contexts))
    return model, replies
