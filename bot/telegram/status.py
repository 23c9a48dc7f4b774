"""The bot's `/metrics`, `/healthz` and `/readyz` (`bot.observability`), wired to its state: the
database and its outage watch, the model slot, and the source of updates."""

from __future__ import annotations

from typing import Any

from telegram.ext import Application

from bot.observability import metrics
from bot.observability.endpoints import Status
from bot.observability.readiness import ReadinessProbe, SourceState
from bot.telegram.polling import Poller
from bot.telegram.state import bot_state_of


def bot_status(
    application: Application[Any, Any, Any, Any, Any, Any], mode: str, source: SourceState
) -> Status:
    state = bot_state_of(application)
    models = state.app.models
    probe = ReadinessProbe(state.app.db, models, source, database_failing=lambda: state.watch.down)
    return Status(mode, probe, before_scrape=lambda: metrics.active_model(models.current().version))


def polling_source(poller: Poller) -> SourceState:
    """The polling loop's state: None while it runs."""

    def state() -> str | None:
        task = poller.task
        if task is None:
            return "the polling loop is not running"
        if task.done():
            return "the polling loop has ended"
        return None

    return state
