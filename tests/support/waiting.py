"""Waiting for something to happen, with a deadline.

Tests never sleep a fixed time and hope that what they wait for happened by then: too short and
the test is flaky on a loaded machine, too long and the suite is slow. They poll the condition
itself, and fail with a clear message when the deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.02


def wait_until(
    condition: Callable[[], T | None], timeout: float = 10.0, *, what: str = "the condition"
) -> T:
    """Call `condition` until it returns something truthy, and return that.

    Raises AssertionError naming `what` if it is still falsy after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(POLL_S)


async def wait_until_async(
    condition: Callable[[], T | None], timeout: float = 10.0, *, what: str = "the condition"
) -> T:
    """`wait_until` for async tests: the event loop keeps running between the checks."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        await asyncio.sleep(POLL_S)
