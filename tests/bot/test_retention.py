import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from bot.cli import main
from bot.retention import prune, prune_periodically
from storage import conversations, schema_revision
from storage.conversations import ChatRef, UserRef
from storage.database import Database
from storage.tables import Message, utcnow
from tests.support.waiting import wait_until_async


def _seed(db: Database) -> None:
    """One exchange 40 days old, one from today."""
    with db.begin() as s:
        chat = ChatRef("console", "c")
        user = UserRef("console", "u")
        conversations.save_exchange(
            s, chat, user, "old", "old reply", turn_created_at=utcnow() - timedelta(days=40)
        )
        conversations.save_exchange(s, chat, user, "new", "new reply")
    with db.begin() as s:  # the old reply is dated like its turn
        s.execute(
            update(Message)
            .where(Message.text == "old reply")
            .values(created_at=utcnow() - timedelta(days=40))
        )


def _texts(db: Database) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(Message.text).order_by(Message.id)))


def test_prune_deletes_only_messages_older_than_the_retention(db: Database) -> None:
    _seed(db)
    assert prune(db, None) == 0 and len(_texts(db)) == 4
    assert prune(db, 30) == 2
    assert _texts(db) == ["new", "new reply"]


async def test_long_running_processes_prune_periodically(db: Database) -> None:
    _seed(db)
    task = asyncio.create_task(prune_periodically(db, 30, every_seconds=0.05))
    try:
        await wait_until_async(lambda: len(_texts(db)) == 2, what="the periodic prune")
    finally:
        task.cancel()
    assert _texts(db) == ["new", "new reply"]
    await prune_periodically(db, None)  # retention off: returns at once


def test_chatbot_db_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    db = Database(url)
    schema_revision.upgrade(db)
    _seed(db)
    monkeypatch.setenv("CHATBOT_DATABASE_URL", url)
    assert main(["db", "prune"]) == 0
    assert "retention is off" in capsys.readouterr().out and len(_texts(db)) == 4
    monkeypatch.setenv("CHATBOT_STORAGE__RETENTION_DAYS", "30")
    assert main(["db", "prune"]) == 0
    assert "deleted 2 messages older than 30 days" in capsys.readouterr().out
    assert _texts(db) == ["new", "new reply"]
    db.dispose()
