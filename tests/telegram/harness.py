"""What the Telegram tests share: the people and chats they use, and `Harness`, the running bot
with a way to wait until it has handled everything sent so far."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from telegram.ext import Application

from bot.app import App
from bot.telegram.runner import RunningBot
from storage import conversations, inbox, outbox
from storage.conversations import Turn
from storage.tables import Feedback
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.support.waiting import wait_until_async

ADMIN_ID = 900
ANN = tg.user(101, "Ann")
BOB = tg.user(102, "Bob")
ADMIN = tg.user(ADMIN_ID, "Ada")
GROUP = tg.group_chat(-1001, "Friends")
# Quick retries; "typing…" at once, so that every reply shows it (the tests that are about the
# delay set their own).
TEST_TELEGRAM = {"send_retry_delay_seconds": 0.01, "typing_delay_seconds": 0}


@dataclass
class Harness:
    fake: FakeTelegram
    app: App
    bot: RunningBot

    @property
    def application(self) -> Application:
        return self.bot.application

    async def settle(self, timeout: float = 10.0) -> None:
        """Until every update pushed so far has been fetched (polling: stored and confirmed),
        fully handled (nothing pending in the inbox, nothing in progress) and everything due in
        the outbox sent (a message told to wait until later does not count)."""
        if self.bot.poller is not None:
            await self.fake.wait_until_fetched(timeout=timeout)
        await wait_until_async(self.idle, timeout, what="the inbox and the outbox to settle")

    def idle(self) -> bool:
        """Nothing in progress, nothing pending in the inbox, nothing due in the outbox."""
        if self.bot.dispatcher.in_flight or self.bot.sender.in_flight:
            return False
        waiting = self.app.db.read(inbox.pending_count, "telegram")
        return waiting == 0 and self.outbox().due == 0

    def outbox(self) -> outbox.QueueState:
        return self.app.db.read(outbox.queue_state, "telegram")

    def turns(self, chat_id: int) -> list[Turn]:
        """Everything stored for a Telegram chat, in order."""

        def read(session: Session) -> list[Turn]:
            found = conversations.find_chat(session, "telegram", chat_id)
            return [] if found is None else conversations.chat_history(session, found)

        return self.app.db.read(read)

    def votes(self) -> list[tuple[int, int, int]]:
        """Every stored vote: (message id, user id, value)."""

        def read(session: Session) -> list[tuple[int, int, int]]:
            rows = session.execute(select(Feedback.message_id, Feedback.user_id, Feedback.value))
            return [tuple(row) for row in rows]  # type: ignore[misc]

        return self.app.db.read(read)

    def user_id(self, telegram_id: int) -> int | None:
        """Our id of a Telegram user; None when nothing is stored about them."""
        return self.app.db.read(conversations.find_user, "telegram", telegram_id)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The inline buttons under a message the bot sent, in one list."""
    return [b for row in message.get("reply_markup", {}).get("inline_keyboard", []) for b in row]
