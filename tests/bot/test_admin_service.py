"""The admin service: the use cases behind /status, /stats, /teach, /rollback and /retrain, with
typed results that both front ends format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from bot import answers
from bot.admin_service import (
    AdminService,
    RetrainRefusal,
    Teaching,
    parse_teaching,
)
from bot.app import App
from bot.dialogue import ChatRef, DialogueService, Incoming, UserRef
from bot.model_slot import ModelSlot
from config import Settings
from storage import model_versions, teaching, training_runs
from storage.database import Database

ADA = UserRef("console", "ada", "Ada")
ADA_CHAT = ChatRef("console", "ada")


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


async def _chat(service: DialogueService, platform: str, text: str = "hello") -> None:
    await service.respond(Incoming(platform, f"{platform}-chat", f"{platform}-user", text))


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        (
            "  what is your favourite colour?  =>  blue  ",
            Teaching("what is your favourite colour?", "blue"),
        ),
        ("a\n b => c  d", Teaching("a b", "c d")),
        ("x => y => z", Teaching("x", "y => z")),
        ("", None),
        ("hello", None),
        ("=> hi", None),
        ("hello =>  ", None),
    ],
)
def test_teaching_is_parsed_from_context_arrow_reply(
    argument: str, expected: Teaching | None
) -> None:
    assert parse_teaching(argument) == expected


async def test_status_reports_the_loaded_model_counts_and_no_run(
    admin: AdminService, service: DialogueService
) -> None:
    await _chat(service, "console")
    report = await admin.status()
    assert (report.model_version, report.metrics_source) == ("tiny", "checkpoint")
    assert report.metrics is not None and "valid_loss" in report.metrics
    assert (report.totals.user_messages, report.totals.bot_replies, report.totals.users) == (
        1,
        1,
        1,
    )
    assert report.last_run is None
    assert 0 <= report.uptime_seconds < 60


async def test_status_takes_an_active_versions_metrics_from_the_registry(
    admin: AdminService, db: Database, models: ModelSlot
) -> None:
    def register(session: Session) -> None:
        model_versions.register_version(
            session, "tiny", str(models.default_dir), metrics={"bleu": 12.5}
        )
        model_versions.activate_version(session, "tiny")

    db.transact(register)
    report = await admin.status()
    assert (report.metrics_source, report.metrics) == ("registry", {"bleu": 12.5})


async def test_stats_count_the_asking_platform_beside_the_totals(
    admin: AdminService, service: DialogueService, db: Database
) -> None:
    await _chat(service, "console")
    await _chat(service, "telegram")
    await _chat(service, "telegram", "how are you?")
    db.transact(training_runs.start_run, trigger="cli")

    report = await admin.stats("console")
    assert report.platform == "console"
    assert (report.total.user_messages, report.total.users) == (3, 2)
    assert (report.on_platform.user_messages, report.on_platform.users) == (1, 1)
    assert report.on_platform_last_day == report.on_platform
    assert report.last_run is not None and report.last_run.status == "running"


async def test_teach_stores_the_pair_with_who_taught_it_where(
    admin: AdminService, db: Database
) -> None:
    result = await admin.teach(ADA_CHAT, ADA, Teaching("what is your name?", "Tiny."))
    assert result.pair_id is not None and result.refusal is None
    [taught] = db.read(teaching.list_taught_pairs)
    assert (taught.id, taught.context, taught.reply) == (
        result.pair_id,
        "what is your name?",
        "Tiny.",
    )
    assert taught.user_id is not None and taught.chat_id is not None


async def test_teach_refuses_text_the_database_cannot_hold_and_stores_nothing(
    admin: AdminService, db: Database
) -> None:
    result = await admin.teach(ADA_CHAT, ADA, Teaching("nul \x00 here", "reply"))
    assert result.pair_id is None
    assert result.refusal is not None and "NUL" in result.refusal
    assert db.read(teaching.list_taught_pairs) == []


async def test_rollback_goes_back_one_version_and_says_when_there_is_none(
    admin: AdminService, db: Database, models: ModelSlot, tmp_path: Path
) -> None:
    nothing = await admin.rollback()
    assert nothing.version is None
    assert nothing.refusal == "no earlier model version was active: nothing to roll back to"

    copy = shutil.copytree(models.default_dir, tmp_path / "v2")

    def register(session: Session) -> None:
        for name, path in (("v1", models.default_dir), ("v2", copy)):
            model_versions.register_version(session, name, str(path))
            model_versions.activate_version(session, name)

    db.transact(register)
    back = await admin.rollback()
    assert (back.version, back.refusal) == ("v1", None)
    assert db.read(model_versions.get_active_version).name == "v1"  # type: ignore[union-attr]


async def test_retrain_is_refused_with_too_few_pairs_or_while_a_run_is_running(
    admin: AdminService, db: Database
) -> None:
    too_few = await admin.start_retrain("console")
    assert (too_few.prepared, too_few.refusal) == (None, RetrainRefusal.TOO_FEW)
    assert too_few.reason.startswith("only 0 new training pairs")
    assert db.read(training_runs.list_runs) == []

    db.transact(training_runs.start_run, trigger="schedule")
    busy = await admin.start_retrain("console", force=True)
    assert (busy.prepared, busy.refusal) == (None, RetrainRefusal.BUSY)
    assert busy.reason.startswith("a retraining is already running (run 1")


async def test_teach_refuses_a_side_longer_than_the_dialogues_input_limit(
    admin: AdminService, db: Database
) -> None:
    limit = admin.app.settings.dialogue.max_input_chars
    for taught in (Teaching("x" * (limit + 1), "hi"), Teaching("hi", "y" * (limit + 1))):
        result = await admin.teach(ADA_CHAT, ADA, taught)
        assert result.pair_id is None
        assert result.refusal == answers.TEACH_TOO_LONG.format(limit=limit)
    assert db.read(teaching.list_taught_pairs) == []
    assert (await admin.teach(ADA_CHAT, ADA, Teaching("x" * limit, "hi"))).pair_id is not None
