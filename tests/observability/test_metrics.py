"""`/metrics` after real traffic through the fake Bot API: each counter and histogram moves by
exactly what happened, and the scrape parses with prometheus-client's own parser."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from bot import answers
from tests.observability.status_http import Samples, delta, get_json, scrape, status_url, value
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg

pytestmark = pytest.mark.slow

LATENCY = "chatbot_reply_latency_seconds"


async def _scrape_until(
    url: str, ready: Callable[[Samples], bool], timeout: float = 20.0
) -> Samples:
    """Scrapes until `ready` holds (a reply is counted once Telegram's answer is back, a moment
    after the fake recorded it)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = await scrape(url)
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            return samples  # the assertions below say what is missing
        await asyncio.sleep(0.05)


async def test_counters_and_histograms_move_by_what_happened_in_polling_mode(
    start_bot: Callable[..., Any], database_url: str, fake: FakeTelegram
) -> None:
    people = [tg.user(300 + i, f"P{i}") for i in range(4)]
    ann, bob = tg.user(401, "Ann"), tg.user(402, "Bob")
    async with start_bot(
        database_url, "polling", rate_limit_messages=2, rate_limit_seconds=600
    ) as bot:
        url = status_url(bot, "/metrics")
        before = await scrape(url)

        fake.fail("sendMessage", 500, times=1)  # one reply fails once, then goes out
        first = fake.say(people[0], "hello")
        for person in people[1:]:
            fake.say(person, "hello")
        fake.say(ann, "!!!")  # no words: a fixed answer
        for _ in range(4):  # two answered, one "slow down", one ignored
            fake.say(bob, "hello")
        for person in people:
            await fake.wait_for_message(person["id"], timeout=30)
        await fake.wait_for_message(ann["id"], timeout=30)
        await fake.wait_for_message(bob["id"], 3, timeout=30)
        fake.push({"message": first["message"]})  # Telegram delivers a message again

        after = await _scrape_until(
            url,
            lambda s: (
                delta(before, s, LATENCY + "_count") >= 7
                and delta(before, s, "chatbot_duplicates_absorbed_total", what="message") >= 1
            ),
        )

    assert [m["text"] for m in fake.sent(ann["id"])] == [answers.NO_WORDS]
    assert [m["text"] for m in fake.sent(bob["id"])][-1] == answers.SLOW_DOWN
    assert delta(before, after, "chatbot_updates_total", kind="message") == 4 + 1 + 4 + 1
    assert delta(before, after, "chatbot_messages_answered_total") == 4 + 1 + 2
    assert delta(before, after, "chatbot_fixed_answers_total", reason="no_words") == 1
    assert delta(before, after, "chatbot_rate_limited_messages_total", decision="warned") == 1
    assert delta(before, after, "chatbot_rate_limited_messages_total", decision="dropped") == 1
    assert delta(before, after, "chatbot_duplicates_absorbed_total", what="message") == 1
    errors = ("chatbot_bot_api_errors_total", {"method": "sendMessage", "kind": "NetworkError"})
    assert delta(before, after, errors[0], **errors[1]) == 1
    assert delta(before, after, "chatbot_bot_api_retries_total", method="sendMessage") == 1
    # Every stored reply (6 generated, 1 fixed) timed from its update's arrival to sendMessage.
    assert delta(before, after, LATENCY + "_count") == 7
    assert 0 < delta(before, after, LATENCY + "_sum") < 7 * 30
    # The 6 generated replies were decoded, in one or more batches.
    assert delta(before, after, "chatbot_decode_batch_size_sum") == 6
    batches = delta(before, after, "chatbot_decode_batch_size_count")
    assert 1 <= batches <= 6
    assert delta(before, after, "chatbot_decode_seconds_count") == batches
    assert value(after, "chatbot_model_info", version=bot_model_version(after)) == 1


def bot_model_version(samples: Samples) -> str:
    [version] = [
        dict(labels)["version"] for name, labels in samples if name == "chatbot_model_info"
    ]
    return version


async def test_the_webhook_server_serves_metrics_health_and_readiness(
    start_bot: Callable[..., Any], database_url: str, fake: FakeTelegram
) -> None:
    async with start_bot(database_url, "webhook") as bot:
        url = status_url(bot, "/metrics")
        before = await scrape(url)
        fake.slow("sendMessage", 0.6)  # one reply takes Telegram 0.6 s to take
        fake.say(tg.user(501, "Cy"), "hello")
        fake.say(tg.user(502, "Di"), "hello")
        await fake.wait_for_message(501, timeout=30)
        await fake.wait_for_message(502, timeout=30)
        after = await _scrape_until(url, lambda s: delta(before, s, LATENCY + "_count") >= 2)
        health = await get_json(status_url(bot, "/healthz"))
        ready = await get_json(status_url(bot, "/readyz"))

    assert delta(before, after, "chatbot_updates_total", kind="message") == 2
    assert delta(before, after, "chatbot_messages_answered_total") == 2
    assert delta(before, after, LATENCY + "_count") == 2
    # Timed to Telegram's answer: the slow one lands above 0.5 s, the sum holds its 0.6 s.
    assert delta(before, after, LATENCY + "_bucket", le="0.5") <= 1
    assert delta(before, after, LATENCY + "_sum") >= 0.6
    assert health[0] == 200 and health[1]["status"] == "ok" and health[1]["mode"] == "webhook"
    status, body = ready
    assert status == 200 and body["status"] == "ready" and body["reasons"] == []
    assert set(body["checks"]) == {"database", "model", "updates"}
    assert all(check["ok"] for check in body["checks"].values())
