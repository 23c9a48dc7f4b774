"""Every Prometheus metric of the bot, in one registry.

Names follow Prometheus' conventions: a `chatbot_` prefix, base units (seconds), `_total` on
counters. Each is changed at the one place where the thing it counts happens (a one-line hook:
the dispatcher, the handlers, the outbox sender, the micro-batcher, the retraining service,
leadership), and served by `/metrics` (`bot.observability.endpoints`) in the bot, or by
`chatbot scheduler --metrics-port`. One registry of our own (with the process and platform
collectors), not prometheus-client's global one, so that nothing a library registers there
leaks into our scrape.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

T = TypeVar("T")

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

# ---- intake ------------------------------------------------------------------------------------

UPDATES = Counter(
    "chatbot_updates",
    "Updates received from Telegram and stored in the inbox, by kind (the update's field: "
    "message, edited_message, callback_query, ...)",
    ["kind"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "chatbot_duplicates_absorbed",
    "Messages (what=message) and commands (what=command) Telegram delivered again, answered "
    "only the first time",
    ["what"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "chatbot_rate_limited_messages",
    "Messages over a person's rate limit: told to slow down (warned) or ignored (dropped)",
    ["decision"],
    registry=REGISTRY,
)

# ---- answers -----------------------------------------------------------------------------------

ANSWERED = Counter(
    "chatbot_messages_answered",
    "Messages answered (a generated reply or a fixed answer), stored and queued for sending",
    registry=REGISTRY,
)
FIXED_ANSWERS = Counter(
    "chatbot_fixed_answers",
    "Messages answered with a fixed text instead of a generated reply, by reason (empty, "
    "too_long, no_words, unknown_words, model_error)",
    ["reason"],
    registry=REGISTRY,
)
REPLY_LATENCY = Histogram(
    "chatbot_reply_latency_seconds",
    "From an update's arrival in this process to Telegram's answer to the sendMessage of its "
    "reply (replies sent by the process that received the update)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=REGISTRY,
)
DECODE_SECONDS = Histogram(
    "chatbot_decode_seconds",
    "Time of one batched decode (all the replies of a micro-batch)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "chatbot_decode_batch_size",
    "Contexts decoded together in one micro-batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
MODEL = Gauge(
    "chatbot_model_info",
    "The model version answering now (value 1, the version as a label)",
    ["version"],
    registry=REGISTRY,
)

# ---- the Bot API -------------------------------------------------------------------------------

BOT_API_ERRORS = Counter(
    "chatbot_bot_api_errors",
    "Bot API calls that failed, by method (sendMessage, getUpdates, ...) and kind (the error's "
    "class: RetryAfter, BadRequest, Forbidden, TimedOut, NetworkError, ...)",
    ["method", "kind"],
    registry=REGISTRY,
)
BOT_API_RETRIES = Counter(
    "chatbot_bot_api_retries",
    "Bot API calls scheduled to be tried again after a failure, by method",
    ["method"],
    registry=REGISTRY,
)

# ---- retraining and the scheduler role ---------------------------------------------------------

RETRAIN_OUTCOMES = ("promoted", "rejected", "failed", "skipped")
RETRAIN_RUNS = Counter(
    "chatbot_retrain_runs",
    "Retraining runs that ended, by outcome (promoted, rejected, failed; skipped: a scheduled "
    "run that did not start, e.g. too few new pairs)",
    ["outcome"],
    registry=REGISTRY,
)
RETRAIN_LAST_RUN = Gauge(
    "chatbot_retrain_last_run_timestamp_seconds",
    "When the last retraining run of this process ended (Unix time)",
    registry=REGISTRY,
)
RETRAIN_LAST_OUTCOME = Enum(
    "chatbot_retrain_last_run_outcome",
    "The outcome of the last retraining run of this process",
    states=["none", *RETRAIN_OUTCOMES],
    registry=REGISTRY,
)
LEADER = Gauge(
    "chatbot_leader",
    "1 while this process leads its role (runs the schedules and retention), 0 while it stands by",
    ["role"],
    registry=REGISTRY,
)


def retrain_finished(outcome: str) -> None:
    """A retraining run ended with `outcome` (one of `RETRAIN_OUTCOMES`)."""
    RETRAIN_RUNS.labels(outcome).inc()
    RETRAIN_LAST_RUN.set_to_current_time()
    RETRAIN_LAST_OUTCOME.state(outcome)


def leading(role: str, now_leading: bool) -> None:
    LEADER.labels(role).set(1 if now_leading else 0)


def active_model(version: str) -> None:
    """The version answering now: the only `chatbot_model_info` series."""
    MODEL.clear()
    MODEL.labels(version).set(1)


def bot_api_error(method: str, error: BaseException) -> None:
    BOT_API_ERRORS.labels(method, type(error).__name__).inc()


async def bot_api_call(method: str, call: Awaitable[T]) -> T:
    """`await call`, a request to the Bot API's `method`, counting its failure."""
    try:
        return await call
    except Exception as exc:
        bot_api_error(method, exc)
        raise
