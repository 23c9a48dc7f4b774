"""kill -9 of the real `chatbot telegram` with 300 messages in flight, then a restart: every
message is stored once and answered once, in polling and in webhook mode.

The kill comes after 60 replies, at a moment when no reply is between Telegram and the bot: sends
are held at the fake server (not carried out) until every reply it did carry out is recorded.
A reply Telegram took whose answer was lost on the way (the process killed in between) would be
sent again after the restart; README's "Delivery guarantees" says so, and this test is about
everything else: updates fetched and not stored, stored and not handled, handled and not sent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot import answers
from storage import conversations
from storage.database import Database
from storage.tables import DeliveryStatus, InboxUpdate, OutboxMessage
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.support.fake_telegram.updates import JSON
from tests.support.waiting import wait_until_async
from tests.telegram import processes

pytestmark = pytest.mark.slow

CHATS = 30
PER_CHAT = 10  # 300 messages
KILL_AFTER = 60
TEXTS = ["hello", "how are you?", "bye", "thank you", "good night"]
SECRET = "kill-test_secret"
QUICK = {
    # A dead process's claims run out quickly, so that the restart takes them over at once.
    "CHATBOT_TELEGRAM__DELIVERY_LEASE_SECONDS": "2",
    "CHATBOT_TELEGRAM__DELIVERY_POLL_SECONDS": "0.2",
    "CHATBOT_TELEGRAM__POLL_TIMEOUT_SECONDS": "2",
    "CHATBOT_TELEGRAM__SEND_RETRY_DELAY_SECONDS": "0.05",
    "CHATBOT_TELEGRAM__RATE_LIMIT_MESSAGES": "1000",
    "CHATBOT_TELEGRAM__FLOOD_MESSAGES_PER_SECOND": "0",
}


def _counts(db_file: Path) -> dict[str, int]:
    db = Database(f"sqlite:///{db_file}")
    try:
        with db.session() as session:

            def count(model: type, *where: object) -> int:
                query = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
                return session.execute(query).scalar_one()

            return {
                "inbox": count(InboxUpdate),
                "handled": count(InboxUpdate, InboxUpdate.status == DeliveryStatus.DONE.value),
                "queued": count(OutboxMessage),
                "sent": count(OutboxMessage, OutboxMessage.status == DeliveryStatus.DONE.value),
            }
    finally:
        db.dispose()


def _stored(db_file: Path, chat_id: int) -> list[tuple[str, bool, str | None]]:
    db = Database(f"sqlite:///{db_file}")
    try:
        chat = db.read(conversations.find_chat, "telegram", chat_id)
        turns = [] if chat is None else db.read(conversations.chat_history, chat)
        return [(t.text, t.from_bot, t.external_id) for t in turns]
    finally:
        db.dispose()


@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_a_bot_killed_with_300_messages_in_flight_loses_and_repeats_nothing(
    fake: FakeTelegram, db_file: Path, tiny_model_dir: Path, mode: str
) -> None:
    log = db_file.parent / "chatbot.log"
    env = processes.bot_env(
        fake,
        f"sqlite:///{db_file}",
        db_file.parent,
        tiny_model_dir,
        CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN=SECRET,
        **QUICK,
    )
    args = ["telegram"]
    if mode == "webhook":
        port = processes.free_port()
        args += ["--webhook-url", "https://bot.example.org/hook", "--port", str(port)]
    people = [tg.user(1000 + i, f"P{i}") for i in range(CHATS)]
    pushed: list[tuple[int, int]] = []  # (chat id, message id) of every message sent to the bot

    process = await processes.start_bot_process(args, env, log)
    try:
        if mode == "webhook":
            await processes.unless_it_exits(fake.wait_for("setWebhook", timeout=120), process, log)
            fake.route_webhook(f"http://127.0.0.1:{port}/hook")
        for round_ in range(PER_CHAT):
            for person in people:
                update = fake.say(person, TEXTS[(round_ + person["id"]) % len(TEXTS)])
                pushed.append((person["id"], update["message"]["message_id"]))
        await processes.unless_it_exits(
            fake.wait_for("sendMessage", KILL_AFTER, timeout=120), process, log
        )
        fake.hold("sendMessage")  # no reply between Telegram and the bot when it dies
        await wait_until_async(
            lambda: _counts(db_file)["sent"] == len(fake.sent()),
            timeout=30,
            what="every reply Telegram took to be recorded",
        )
        await processes.kill_hard(process)
        at_kill = {
            **_counts(db_file),
            "answered": len(fake.sent()),
            "confirmed": len(pushed) - len(fake.unconfirmed),
        }
        fake.release("sendMessage")

        restarted = time.monotonic()
        process = await processes.start_bot_process(args, env, log)
        await processes.unless_it_exits(_all_answered(fake, people), process, log)
        recovery_s = time.monotonic() - restarted
        code = await processes.stop(process)
    finally:
        await processes.kill_hard(process)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert at_kill["answered"] < len(pushed)  # it died with work in flight
    sent = fake.sent()
    assert len(sent) == len(pushed) == CHATS * PER_CHAT
    for person in people:
        stored = _stored(db_file, person["id"])
        theirs = [m for m in sent if m["chat"]["id"] == person["id"]]
        asked = [str(mid) for chat, mid in pushed if chat == person["id"]]
        assert [ext for _, from_bot, ext in stored if not from_bot] == asked  # once each, in order
        replies = [ext for _, from_bot, ext in stored if from_bot]
        assert replies == [str(m["message_id"]) for m in theirs]  # each reply sent exactly once
        assert [from_bot for _, from_bot, _ in stored] == [False, True] * PER_CHAT
    assert answers.APOLOGY not in {m["text"] for m in sent}
    assert "Traceback" not in output, output[-3000:]
    print(  # measured numbers, for the record (pytest -s)
        f"\n{mode}: killed with {at_kill['answered']} of {len(pushed)} answered, "
        f"{at_kill['confirmed']} confirmed to Telegram, {at_kill['inbox']} in the inbox "
        f"({at_kill['handled']} handled), {at_kill['queued']} replies queued "
        f"({at_kill['sent']} sent); after the restart all {len(sent)} answered once in "
        f"{recovery_s:.1f} s (start included)"
    )


async def _all_answered(fake: FakeTelegram, people: list[JSON]) -> None:
    for person in people:
        await fake.wait_for_message(person["id"], PER_CHAT, timeout=120)


@pytest.fixture
def db_file(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "chatbot.db"
    path.write_bytes(sqlite_template.read_bytes())
    return path
