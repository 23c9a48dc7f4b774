"""What the observability tests share: the bot's settings for them, where its endpoints are,
and reading them (a scrape parsed with prometheus-client's own parser, JSON answers)."""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bot.telegram.runner import RunningBot
from bot.telegram.webhook import WebhookConfig

# Quick to notice work and the database; "typing…" never (fewer calls to count).
QUICK: dict[str, Any] = {
    "delivery_poll_seconds": 0.2,
    "database_retry_max_delay_seconds": 0.5,
    "send_retry_delay_seconds": 0.01,
    "poll_timeout_seconds": 2,
    "typing_delay_seconds": 30,
}
WEBHOOK_SECRET = "observability-Secret_42"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def webhook_config() -> WebhookConfig:
    return WebhookConfig("https://bot.example.org/hook", WEBHOOK_SECRET, port=0)


def status_url(bot: RunningBot, path: str) -> str:
    """Where `path` (/metrics, /healthz, /readyz) of a running bot is served."""
    if bot.webhook is not None:
        port = bot.webhook.port
    else:
        assert bot.status_listener is not None
        port = bot.status_listener.port
    return f"http://127.0.0.1:{port}{path}"


def parse(text: str) -> Samples:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return parse(await response.text())


async def get_json(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for one not (yet) exported, as for a counter never incremented."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)
