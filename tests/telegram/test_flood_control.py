"""Outgoing flood control: Telegram's "retry after" holds back the chat it was about, and only
that chat; the whole bot stays under its overall rate."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from telegram.error import RetryAfter

from bot.telegram.flood_control import ChatFloodLimiter, RetryPolicy
from bot.telegram.flood_limits import LocalFloodLimits
from storage.tables import OutboxMessage
from tests.support.fake_telegram import updates as tg
from tests.support.waiting import wait_until_async
from tests.telegram.harness import ANN


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _request(calls: list[Any], answers: list[Any]) -> Any:
    """A stand-in for PTB's HTTP call: records its chat, answers (or raises) the next answer."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["chat_id"])
        answer = answers.pop(0) if answers else True
        if isinstance(answer, BaseException):
            raise answer
        return answer

    return call


async def _send(
    limiter: ChatFloodLimiter, call: Any, chat_id: int | None, retries: int | None
) -> Any:
    data = {} if chat_id is None else {"chat_id": chat_id}
    policy = None if retries is None else RetryPolicy(retries)
    return await limiter.process_request(
        call, (), {"chat_id": chat_id}, "sendMessage", data, policy
    )


async def test_a_retry_after_pauses_that_chat_and_no_other() -> None:
    clock = Clock()
    limiter = ChatFloodLimiter(LocalFloodLimits(overall_max_rate=0, group_max_rate=0, clock=clock))
    calls: list[Any] = []
    call = _request(calls, [RetryAfter(20)])

    with pytest.raises(RetryAfter):
        await _send(limiter, call, 1, retries=0)  # the outbox's way: no waiting here

    assert await limiter.paused_for(1) == 20 and await limiter.paused_for(2) == 0
    assert await _send(limiter, call, 2, retries=0) is True  # another chat: at once
    with pytest.raises(RetryAfter):
        await _send(limiter, call, 1, retries=0)  # still paused: refused without a request
    assert calls == [1, 2]
    clock.now += 20
    assert await _send(limiter, call, 1, retries=0) is True
    assert calls == [1, 2, 1]


async def test_a_retry_after_without_a_chat_pauses_everything() -> None:
    clock = Clock()
    limiter = ChatFloodLimiter(LocalFloodLimits(overall_max_rate=0, group_max_rate=0, clock=clock))
    call = _request([], [RetryAfter(5)])

    with pytest.raises(RetryAfter):
        await _send(limiter, call, None, retries=0)

    assert await limiter.paused_for(None) == 5 and await limiter.paused_for(7) == 5


async def test_with_retries_a_paused_request_waits_and_goes_while_others_go_at_once() -> None:
    limits = LocalFloodLimits(overall_max_rate=0, group_max_rate=0)
    limiter = ChatFloodLimiter(limits, max_retries=1)
    calls: list[Any] = []
    call = _request(calls, [RetryAfter(1)])
    started = time.monotonic()

    slowed = asyncio.create_task(_send(limiter, call, 1, retries=None))
    await wait_until_async(lambda: limits.paused_seconds(1) > 0, what="the first try refused")
    assert await _send(limiter, call, 2, retries=None) is True  # while chat 1 waits
    other_done = time.monotonic() - started
    assert await slowed is True

    assert calls == [1, 2, 1]
    assert other_done < 0.5 and time.monotonic() - started >= 1.0


async def test_the_overall_rate_paces_every_chat() -> None:
    limiter = ChatFloodLimiter(LocalFloodLimits(overall_max_rate=20, group_max_rate=0))
    call = _request([], [])
    started = time.monotonic()

    await asyncio.gather(*(_send(limiter, call, chat, retries=0) for chat in range(40)))

    assert time.monotonic() - started >= 0.9  # 40 requests at 20 a second: about a second


async def test_a_20_s_retry_after_for_one_chat_holds_back_no_other_chat(start_bot) -> None:
    async with start_bot(delivery_poll_seconds=0.2) as bot:
        bot.fake.fail("sendMessage", 429, retry_after=20, chat_id=ANN["id"])
        bot.fake.say(ANN, "hello")
        [refused] = await bot.fake.wait_for("sendMessage", ok=False)
        others = [tg.user(700 + i, f"O{i}") for i in range(10)]
        pushed = time.monotonic()
        for person in others:
            bot.fake.say(person, "hello")
        for person in others:
            await bot.fake.wait_for_message(person["id"], timeout=10)
        took = time.monotonic() - pushed
        await bot.settle()

        assert refused.status == 429 and took < 2.0, f"{took:.1f} s"
        assert bot.fake.sent(ANN["id"]) == []  # Ann's reply waits its 20 s, in the outbox
        with bot.app.db.session() as session:
            [(status, due)] = session.execute(
                select(OutboxMessage.status, OutboxMessage.next_attempt_at).where(
                    OutboxMessage.chat_key == str(ANN["id"])
                )
            ).all()
        assert status == "pending"
        assert (due - datetime.now(UTC)).total_seconds() > 15
        print(f"\n10 other chats answered {took:.2f} s after a 20 s retry_after for one chat")
