"""What every handler shares, kept in `application.bot_data` (PTB's place for it), not globals."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telegram.ext import Application, CallbackContext

from bot.admin_service import AdminService
from bot.app import App
from bot.dialogue import DialogueService
from bot.telegram.delivery import OutboxSender
from bot.telegram.dispatcher import Dispatcher
from bot.telegram.export_cooldown import ExportCooldown
from bot.telegram.outage import OutageWatch
from bot.telegram.rate_limit import UserRateLimiter
from config import TelegramSettings

PLATFORM = "telegram"
_KEY = "chatbot"


@dataclass
class BotState:
    app: App
    limiter: UserRateLimiter  # per person; shared by replicas through Redis, if configured
    admin: AdminService
    watch: OutageWatch  # is the database answering?
    dispatcher: Dispatcher  # inbox -> handlers
    sender: OutboxSender  # outbox -> Telegram
    exports: ExportCooldown  # one /export per person per cooldown; shared like `limiter`

    @property
    def service(self) -> DialogueService:
        return self.app.service

    @property
    def settings(self) -> TelegramSettings:
        return self.app.settings.telegram

    def is_admin(self, user_id: object) -> bool:
        """Only an int can be an admin: a forged update's `1001.0` (or `True` for 1) equals an
        admin's id in Python and must not pass for it."""
        return type(user_id) is int and user_id in self.settings.admin_ids


def attach(bot_data: dict[Any, Any], state: BotState) -> None:
    bot_data[_KEY] = state


def bot_state(context: CallbackContext[Any, Any, Any, Any]) -> BotState:
    """The state, from a handler's context."""
    state: BotState = context.bot_data[_KEY]
    return state


def bot_state_of(application: Application[Any, Any, Any, Any, Any, Any]) -> BotState:
    state: BotState = application.bot_data[_KEY]
    return state
