"""/teach and /rollback queue their answer in the transaction that makes their change: a process
dying between the two (simulated by an answer that cannot be made) leaves neither, so the run
that takes the command over makes the change once; a refusal is answered too."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import command_replies
from bot.admin_service import ANSWERED_BEFORE, AdminService, RollbackResult, Teaching, TeachResult
from bot.app import App
from bot.command_answer import CommandAnswer
from bot.dialogue import ChatRef, DialogueService, UserRef
from bot.model_slot import ModelSlot
from config import Settings
from storage import model_versions, teaching
from storage.database import Database
from storage.outbox import OutgoingMessage
from storage.tables import OutboxMessage

ADA = UserRef("telegram", 900, "Ada")
ADA_CHAT = ChatRef("telegram", 900)
KEY = "update:7001:0"


class Died(Exception):
    """The process died after the change, before its answer was written."""


def _dies(_result: Any) -> str:
    raise Died


def _answer(text: Any) -> CommandAnswer[Any]:
    return CommandAnswer(OutgoingMessage("telegram", 900, "", dedupe_key=KEY), text)


@pytest.fixture
def admin(
    tmp_path: Path, db: Database, models: ModelSlot, service: DialogueService
) -> AdminService:
    settings = Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=db.url.render_as_string(hide_password=False),
        model_dir=models.default_dir,
        db_auto_upgrade=False,
    )
    return AdminService(App(settings, db, models, service))


def _queued(db: Database) -> list[tuple[str | None, str]]:
    def read(session: Session) -> list[tuple[str | None, str]]:
        rows = session.execute(select(OutboxMessage.dedupe_key, OutboxMessage.text))
        return [(key, text) for key, text in rows]

    return db.read(read)


async def test_teach_stores_its_pair_only_with_its_answer(
    admin: AdminService, db: Database
) -> None:
    taught = Teaching("what colour is the sky", "blue")
    with pytest.raises(Died):
        await admin.teach(ADA_CHAT, ADA, taught, _answer(_dies))
    assert db.read(teaching.list_taught_pairs) == []
    assert _queued(db) == []

    # Taken over: the command runs again and makes its change once, with its answer.
    result = await admin.teach(ADA_CHAT, ADA, taught, _answer(command_replies.teach_text))
    assert isinstance(result, TeachResult) and result.pair_id is not None
    assert [(p.context, p.reply) for p in db.read(teaching.list_taught_pairs)] == [
        ("what colour is the sky", "blue")
    ]
    assert _queued(db) == [(KEY, command_replies.teach_text(result))]


async def test_a_second_run_whose_answer_is_queued_teaches_nothing(
    admin: AdminService, db: Database
) -> None:
    """Two runs of one update (one lost its lease in a database outage, the other took it over,
    or a rerun after a commit whose acknowledgement was lost): the answer's key admits one."""
    taught = Teaching("what colour is the sky", "blue")
    first = await admin.teach(ADA_CHAT, ADA, taught, _answer(command_replies.teach_text))
    second = await admin.teach(ADA_CHAT, ADA, taught, _answer(command_replies.teach_text))
    assert first.pair_id is not None
    assert (second.pair_id, second.refusal) == (None, ANSWERED_BEFORE)
    assert len(db.read(teaching.list_taught_pairs)) == 1
    assert _queued(db) == [(KEY, command_replies.teach_text(first))]


async def test_a_refused_teaching_is_answered(admin: AdminService, db: Database) -> None:
    result = await admin.teach(
        ADA_CHAT, ADA, Teaching("nul \x00 here", "reply"), _answer(command_replies.teach_text)
    )
    assert result.pair_id is None and result.refusal is not None
    assert _queued(db) == [(KEY, command_replies.teach_text(result))]
    assert db.read(teaching.list_taught_pairs) == []


async def test_rollback_switches_only_with_its_answer(
    admin: AdminService, db: Database, models: ModelSlot, tmp_path: Path
) -> None:
    nothing = await admin.rollback(_answer(command_replies.rollback_text))
    assert nothing.version is None
    assert _queued(db) == [(KEY, command_replies.rollback_text(nothing))]

    copy_2 = shutil.copytree(models.default_dir, tmp_path / "v2")
    copy_3 = shutil.copytree(models.default_dir, tmp_path / "v3")

    def register(session: Session) -> None:
        for name, path in (("v1", models.default_dir), ("v2", copy_2), ("v3", copy_3)):
            model_versions.register_version(session, name, str(path))
            model_versions.activate_version(session, name)

    db.transact(register)
    with pytest.raises(Died):
        await admin.rollback(_answer(_dies))
    assert db.read(model_versions.get_active_version).name == "v3"  # type: ignore[union-attr]

    other_key = CommandAnswer[RollbackResult](
        OutgoingMessage("telegram", 900, "", dedupe_key="update:7002:0"),
        command_replies.rollback_text,
    )
    back = await admin.rollback(other_key)
    assert back.version == "v2"
    assert (("update:7002:0", command_replies.rollback_text(back))) in _queued(db)
    again = await admin.rollback(other_key)  # the same command run again: not one more back
    assert (again.version, again.refusal) == (None, ANSWERED_BEFORE)
    assert db.read(model_versions.get_active_version).name == "v2"  # type: ignore[union-attr]
