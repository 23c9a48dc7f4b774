"""What became of a person's message, counted and logged once: answered (a generated reply or
a fixed answer, by reason), a duplicate delivery, or over the rate limit.

Called from the Telegram handlers with what the dialogue service returned. The log line of an
answer carries the update, the model version and the latency (see `log_format`); never the text.
"""

from __future__ import annotations

import logging

from bot.dialogue import Answer
from bot.observability import metrics
from bot.observability.update_context import CURRENT, TRACKER

log = logging.getLogger(__name__)


def answered(answer: Answer) -> None:
    """The dialogue service's answer to the message of the update being handled."""
    if answer.duplicate:
        metrics.DUPLICATES.labels("message").inc()
        return
    metrics.ANSWERED.inc()
    context = CURRENT.get()
    if answer.fixed_reason is None:
        latency_s = answer.latency_ms / 1000.0
        if context is not None:
            context.model_version, context.latency_seconds = answer.model_version, latency_s
        log.info("answered with model %s in %.3f s", answer.model_version, latency_s)
    else:
        reason = answer.fixed_reason.value
        metrics.FIXED_ANSWERS.labels(reason).inc()
        log.info("answered with a fixed answer (%s)", reason)
    TRACKER.reply_queued(answer.reply_id)


def command_delivery(first: bool) -> None:
    """A command arrived; `first` is False when Telegram delivered it before."""
    if not first:
        metrics.DUPLICATES.labels("command").inc()


def rate_limit_decision(decision: object) -> None:
    """What the rate limiter decided about a message (`bot.telegram.rate_limit.Decision`)."""
    value = getattr(decision, "value", decision)
    if value == "warn":
        metrics.RATE_LIMITED.labels("warned").inc()
    elif value == "drop":
        metrics.RATE_LIMITED.labels("dropped").inc()
