"""kill -9 of the real `chatbot telegram` with 300 messages in flight, then a restart: every
message is stored once and answered once, in polling and in webhook mode. Two webhook replicas on
PostgreSQL answering 200 chats x 5 messages, with both alive and with one killed mid-run.

The kill comes after 60 replies, at a moment when no reply is between Telegram and the bot: sends
are held at the fake server (not carried out) until every reply it did carry out is recorded.
A reply Telegram took whose answer was lost on the way (the process killed in between) would be
sent again after the restart; README's "Delivery guarantees" says so, and this test is about
everything else: updates fetched and not stored, stored and not handled, handled and not sent.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot import answers
from storage import conversations, inbox, outbox
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
        return _turns_in(db, chat_id)
    finally:
        db.dispose()


def _turns_in(db: Database, chat_id: int) -> list[tuple[str, bool, str | None]]:
    chat = db.read(conversations.find_chat, "telegram", chat_id)
    turns = [] if chat is None else db.read(conversations.chat_history, chat)
    return [(t.text, t.from_bot, t.external_id) for t in turns]


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


# ---- two webhook replicas on PostgreSQL ---------------------------------------------------------

REPLICA_CHATS, REPLICA_PER_CHAT = 200, 5  # 1,000 messages
FIRST_ROUNDS = 3  # messages per chat sent before the kill; the rest after it
REPLICA_KILL_AFTER = 150  # replies
HOOK = "https://bot.example.org/hook"
REPLICA_SETTINGS = {
    **QUICK,
    # Two processes compete for every row: a lease must outlast a busy moment on a loaded
    # machine, or the other replica takes a row over while its holder still works on it.
    "CHATBOT_TELEGRAM__DELIVERY_LEASE_SECONDS": "5",
    "CHATBOT_TELEGRAM__TYPING_DELAY_SECONDS": "30",  # not what this is about: no chat actions
}


@pytest.mark.parametrize("backend", ["postgres"])
@pytest.mark.parametrize("kill", [False, True], ids=["both-alive", "one-killed"])
async def test_two_webhook_replicas_answer_200_chats_once_each_in_order(
    fake: FakeTelegram, database: Database, tiny_model_dir: Path, tmp_path: Path, kill: bool
) -> None:
    """Telegram's rules as the fake keeps them: one POST in flight per chat, a failed or
    timed-out POST sent again (to the next replica in turn). Killed with SIGKILL after 150
    replies (sends held at the fake, as above, so that no reply is between Telegram and the bot),
    a replica leaves updates and replies it had claimed: the other takes them over once their
    leases run out, and the POSTs that meet the dead replica are sent again to the other."""
    url = database.url.render_as_string(hide_password=False)
    fake.webhook_timeout_seconds = 10.0
    replicas: list[tuple[asyncio.subprocess.Process, int, Path]] = []
    try:
        for index in range(2):
            home = tmp_path / f"replica-{index}"
            home.mkdir()
            env = processes.bot_env(
                fake,
                url,
                home,
                tiny_model_dir,
                CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN=SECRET,
                **REPLICA_SETTINGS,
            )
            port = processes.free_port()
            args = ["telegram", "--webhook-url", HOOK, "--port", str(port)]
            log = home / "chatbot.log"
            replicas.append((await processes.start_bot_process(args, env, log), port, log))
        for process, port, log in replicas:
            await processes.until_healthy(port, process, log)
        fake.set_webhook(HOOK, SECRET)
        targets = [f"http://127.0.0.1:{port}/hook" for _, port, _ in replicas]
        fake.route_webhook(*targets)

        people = [tg.user(5000 + i, f"C{i}") for i in range(REPLICA_CHATS)]
        pushed: list[tuple[int, int]] = []

        def send(rounds: range) -> None:
            for round_ in rounds:
                for person in people:
                    update = fake.say(person, TEXTS[(round_ + person["id"]) % len(TEXTS)])
                    pushed.append((person["id"], update["message"]["message_id"]))

        in_flight_at_kill = 0
        if not kill:
            send(range(REPLICA_PER_CHAT))
        else:
            send(range(FIRST_ROUNDS))
            await fake.wait_for("sendMessage", REPLICA_KILL_AFTER, timeout=120)
            fake.hold("sendMessage")
            await wait_until_async(
                lambda: _sent_recorded(database) == len(fake.sent()),
                timeout=30,
                what="every reply Telegram took to be recorded",
            )
            victim, _, _ = replicas[1]
            in_flight_at_kill = _claimed_by_pid(database, victim.pid)
            await processes.kill_hard(victim)
            killed_at = len(fake.webhook_posts)
            fake.release("sendMessage")
            send(range(FIRST_ROUNDS, REPLICA_PER_CHAT))
        survivors = replicas[:1] if kill else replicas
        watched, _, watched_log = survivors[0]
        for person in people:
            await processes.unless_it_exits(
                fake.wait_for_message(person["id"], REPLICA_PER_CHAT, timeout=120),
                watched,
                watched_log,
            )
        codes = [await processes.stop(process) for process, _, _ in survivors]
    finally:
        for process, _, _ in replicas:
            await processes.kill_hard(process)

    logs = [log.read_text() for _, _, log in replicas]
    assert codes == [0] * len(survivors), logs[0][-3000:]
    sent = fake.sent()
    assert len(sent) == len(pushed) == REPLICA_CHATS * REPLICA_PER_CHAT  # none lost, none twice
    for person in people:
        stored = _turns_in(database, person["id"])
        asked = [str(mid) for chat, mid in pushed if chat == person["id"]]
        assert [ext for _, from_bot, ext in stored if not from_bot] == asked  # once each, in order
        theirs = [str(m["message_id"]) for m in sent if m["chat"]["id"] == person["id"]]
        assert [ext for _, from_bot, ext in stored if from_bot] == theirs  # each sent once
        assert [from_bot for _, from_bot, _ in stored] == [False, True] * REPLICA_PER_CHAT
    accepted = {target: 0 for target in targets}
    for _, target, status in fake.webhook_posts:
        accepted[target] += status == 200
    assert all(accepted.values()), accepted  # both replicas took updates
    assert _counts_in(database) == {"pending updates": 0, "pending replies": 0}
    if kill:
        assert in_flight_at_kill > 0  # it died with work claimed: all of it done by the other
        after = fake.webhook_posts[killed_at:]
        refused = {u for u, target, status in after if target == targets[1] and status != 200}
        taken = {u for u, target, status in after if target == targets[0] and status == 200}
        assert refused, "no POST met the killed replica"
        assert refused <= taken  # each sent again, to the other, which took it
    assert answers.APOLOGY not in {m["text"] for m in sent}
    for output in logs:
        assert "Traceback" not in output, output[-3000:]
    print(  # measured numbers, for the record (pytest -s)
        f"\ntwo replicas{', one killed' if kill else ''}: {len(sent)} answered once; "
        f"POSTs accepted per replica {list(accepted.values())}; "
        f"rows claimed by the killed one at the kill: {in_flight_at_kill}, updates claimed "
        f"again: {_taken_over(database)}"
    )


def _sent_recorded(db: Database) -> int:
    def count(session: Session) -> int:
        done = OutboxMessage.status == DeliveryStatus.DONE.value
        return session.execute(select(func.count()).where(done)).scalar_one()

    return db.read(count)


def _claimed_by_pid(db: Database, pid: int) -> int:
    """Pending inbox updates and outbox messages leased to the process `pid` (its worker name is
    host:pid:random)."""
    pending = DeliveryStatus.PENDING.value

    def count(session: Session) -> int:
        updates = select(func.count()).where(
            InboxUpdate.status == pending, InboxUpdate.claimed_by.contains(f":{pid}:")
        )
        messages = select(func.count()).where(
            OutboxMessage.status == pending, OutboxMessage.claimed_by.contains(f":{pid}:")
        )
        return session.execute(updates).scalar_one() + session.execute(messages).scalar_one()

    return db.read(count)


def _counts_in(db: Database) -> dict[str, int]:
    def count(session: Session) -> dict[str, int]:
        return {
            "pending updates": inbox.pending_count(session, "telegram"),
            "pending replies": outbox.queue_state(session, "telegram").due
            + outbox.queue_state(session, "telegram").waiting,
        }

    return db.read(count)


def _taken_over(db: Database) -> int:
    """Inbox updates claimed more than once (a process died holding them)."""

    def count(session: Session) -> int:
        return session.execute(select(func.count()).where(InboxUpdate.attempts > 1)).scalar_one()

    return db.read(count)
