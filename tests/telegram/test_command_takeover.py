"""A command whose process died between claiming it and answering it is answered by the process
that takes its update over; once its answer was queued it is not run again; and a different
update carrying the same message stays a redelivery.

In-process, the dead replica is simulated by the rows it leaves behind (the update stored and
leased to it, the command claimed by that update, and, in one case, the pair taught and the
answer queued), written before the real bot starts; the bot takes the update over when the lease
runs out. With real processes on PostgreSQL, the first `chatbot telegram` is held between the
claim and the answer (the test locks the outbox table) and killed with SIGKILL there.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from bot import command_replies
from bot.admin_service import TeachResult, parse_teaching
from bot.telegram import phrases
from storage import inbox, outbox, teaching
from storage.database import Database
from storage.handled_commands import claim_command
from storage.inbox import ReceivedUpdate
from storage.outbox import OutgoingMessage
from storage.tables import HandledCommand
from tests.support.fake_telegram import FakeTelegram
from tests.support.waiting import wait_until_async
from tests.telegram import processes
from tests.telegram.harness import ADMIN, ANN, Harness

pytestmark = pytest.mark.slow  # the whole Telegram stack with a model
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)]
TEACH = "/teach what colour is the sky => blue"
LEASE = 1.0  # the dead replica's lease on the update: taken over once it runs out


def _died_after_claiming(
    db: Database, update: dict[str, Any], *, taught_and_answered: bool = False
) -> None:
    """What a replica that stored `update`, claimed it and its command, and died leaves behind;
    with `taught_and_answered`, it also stored the pair and queued its answer first."""
    message = update["message"]

    def leave(session: Session) -> None:
        chat = message["chat"]["id"]
        inbox.store(session, "telegram", [ReceivedUpdate(update["update_id"], str(chat), update)])
        [claimed] = inbox.claim(session, "telegram", "dead", limit=1, lease_seconds=LEASE)
        assert claimed.update_id == update["update_id"]
        claim_command(
            session, "telegram", chat, message["message_id"], update_id=update["update_id"]
        )
        if taught_and_answered:
            taught = parse_teaching(TEACH.removeprefix("/teach "))
            assert taught is not None
            teaching.add_taught_pair(session, taught.context, taught.reply)
            answer = command_replies.teach_text(TeachResult(taught, 1))
            key = f"update:{update['update_id']}:0"  # the dispatcher's key of its first message
            outbox.enqueue(session, OutgoingMessage("telegram", chat, answer, dedupe_key=key))

    db.transact(leave)


def _taught(bot: Harness) -> list[tuple[str, str]]:
    pairs = bot.app.db.read(teaching.list_taught_pairs)
    return [(p.context, p.reply) for p in pairs]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_command_claimed_by_a_replica_that_died_is_answered_by_the_next(
    fake: FakeTelegram, database: Database, start_bot: Callable[..., Any]
) -> None:
    update = fake.say(ADMIN, TEACH)  # not confirmed by the dead replica: Telegram sends it again
    _died_after_claiming(database, update)
    async with start_bot() as bot:
        [answer] = await fake.wait_for_message(ADMIN["id"], timeout=10 + LEASE)
        await bot.settle()
        # The same message in a new update (a duplicate post) is still not answered twice.
        fake.push({"message": update["message"]})
        fake.say(ADMIN, "/help")
        await fake.wait_for_message(ADMIN["id"], 2)
        await bot.settle()

    assert answer["text"] == command_replies.TEACH_DONE.format(
        context="what colour is the sky", reply="blue"
    )
    # The answer to /teach once, then to /help: the duplicate post got none.
    assert [m["text"] for m in fake.sent(ADMIN["id"])] == [
        answer["text"],
        phrases.HELP + phrases.ADMIN_HELP,
    ]
    assert _taught(bot) == [("what colour is the sky", "blue")]


async def test_a_command_whose_answer_was_queued_is_not_run_again(
    fake: FakeTelegram, database: Database, start_bot: Callable[..., Any]
) -> None:
    update = fake.say(ADMIN, TEACH)
    _died_after_claiming(database, update, taught_and_answered=True)
    async with start_bot() as bot:
        [answer] = await fake.wait_for_message(ADMIN["id"], timeout=10 + LEASE)
        await bot.settle()
        assert not bot.app.db.read(inbox.pending_count, "telegram")

    assert answer["text"].startswith("Noted: “what colour is the sky” → “blue”")
    assert len(fake.sent(ADMIN["id"])) == 1  # sent from the outbox, not answered again
    assert _taught(bot) == [("what colour is the sky", "blue")]  # taught once


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_process_killed_between_claiming_a_command_and_answering_it(
    fake: FakeTelegram, database: Database, tiny_model_dir: Path, tmp_path: Path
) -> None:
    env = processes.bot_env(
        fake,
        database.url.render_as_string(hide_password=False),
        tmp_path,
        tiny_model_dir,
        CHATBOT_TELEGRAM__DELIVERY_LEASE_SECONDS="2",
        CHATBOT_TELEGRAM__DELIVERY_POLL_SECONDS="0.2",
        CHATBOT_TELEGRAM__POLL_TIMEOUT_SECONDS="1",
    )
    log = tmp_path / "chatbot.log"
    process = await processes.start_bot_process(["telegram"], env, log)
    try:
        await processes.unless_it_exits(fake.wait_for("getUpdates", timeout=120), process, log)
        with database.engine.connect() as locker:
            # Queueing the answer waits for this lock: the command is claimed, not answered.
            locker.execute(text("LOCK TABLE outbox_messages IN EXCLUSIVE MODE"))
            update = fake.say(ANN, "/help")
            await processes.unless_it_exits(
                wait_until_async(
                    lambda: _claim(database, update["message"]["message_id"]),
                    timeout=60,
                    what="the command to be claimed",
                ),
                process,
                log,
            )
            await processes.kill_hard(process)
            locker.rollback()
        assert _claim(database, update["message"]["message_id"]) == (update["update_id"],)
        assert fake.sent(ANN["id"]) == []

        process = await processes.start_bot_process(["telegram"], env, log)
        [answer] = await processes.unless_it_exits(
            fake.wait_for_message(ANN["id"], timeout=120), process, log
        )
        code = await processes.stop(process)
    finally:
        await processes.kill_hard(process)

    assert code == 0, log.read_text()[-3000:]
    assert answer["text"] == phrases.HELP
    assert [m["text"] for m in fake.sent(ANN["id"])] == [phrases.HELP]  # once
    assert "Traceback" not in log.read_text()


def _claim(db: Database, message_id: int) -> tuple[int | None] | None:
    """The claim of the command in message `message_id` of ANN's chat, as (the update that made
    it,); None while there is none."""

    def read(session: Session) -> tuple[int | None] | None:
        row = session.execute(
            select(HandledCommand.update_id).where(
                HandledCommand.chat_external_id == str(ANN["id"]),
                HandledCommand.external_id == str(message_id),
            )
        ).one_or_none()
        return None if row is None else (row.update_id,)

    return db.read(read)
