"""Retraining schedules: stored in the app database, surviving restarts, firing, reporting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from bot.retraining.errors import InvalidScheduleError
from bot.retraining.scheduler import JOB_FUNCTION, RetrainScheduler, parse_cron
from config import Settings, TelegramSettings
from storage import model_versions, schema_revision
from storage.database import Database
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.support.retraining import seed_pattern

ADMIN = tg.user(900, "Ada")


@pytest.mark.parametrize(
    "expression",
    ["", "0 3 * *", "0 3 * * * *", "61 3 * * *", "0 25 * * *", "0 3 * * funday", "every day"],
)
def test_a_malformed_cron_expression_is_refused_and_nothing_is_stored(
    settings: Settings, db: Database, expression: str
) -> None:
    schedules = RetrainScheduler(settings, db)
    with pytest.raises(InvalidScheduleError, match="invalid cron expression"):
        schedules.add(expression)
    with pytest.raises(InvalidScheduleError):
        schedules.replace_all(expression)
    assert schedules.list() == []


@pytest.mark.parametrize("expression", ["0 0 30 2 *", "0 0 31 4 *"])
def test_a_cron_expression_that_never_runs_is_refused_and_nothing_is_stored(
    settings: Settings, db: Database, expression: str
) -> None:
    schedules = RetrainScheduler(settings, db)
    nightly = schedules.add("0 3 * * *")
    with pytest.raises(InvalidScheduleError, match="never runs"):
        schedules.add(expression)
    with pytest.raises(InvalidScheduleError, match="never runs"):
        schedules.replace_all(expression)  # what /schedule <cron> does
    assert schedules.list() == [nightly]  # and the schedule in place stays


def test_schedules_are_added_listed_and_removed(settings: Settings, db: Database) -> None:
    schedules = RetrainScheduler(settings, db)
    nightly = schedules.add("0 3 * * *")
    assert schedules.add(" 0  3 * * * ") == nightly  # the same expression is one schedule
    weekly = schedules.add("30 4 * * sun")

    listed = schedules.list()
    assert [(s.id, s.cron) for s in listed] == [
        (nightly.id, "0 3 * * *"),
        (weekly.id, "30 4 * * sun"),
    ]
    next_run = listed[0].next_run
    assert next_run is not None and (next_run.hour, next_run.minute) == (3, 0)
    assert next_run.utcoffset() == timedelta(0)

    schedules.remove(nightly.id)
    assert [s.id for s in schedules.list()] == [weekly.id]
    with pytest.raises(InvalidScheduleError, match="no schedule with id"):
        schedules.remove(nightly.id)
    assert schedules.replace_all("15 2 * * *").cron == "15 2 * * *"
    assert [s.cron for s in schedules.list()] == ["15 2 * * *"]
    assert schedules.remove_all() == 1 and schedules.list() == []


def test_a_stored_job_names_its_function_and_coalesces_missed_daily_runs(
    settings: Settings, db: Database
) -> None:
    schedules = RetrainScheduler(settings, db)
    added = schedules.add("0 3 * * *")
    assert schedules.job_options(added.id) == {
        "misfire_grace_time": settings.retrain.misfire_grace_seconds,
        "coalesce": True,
        "max_instances": 1,
        "function": JOB_FUNCTION,
    }
    assert parse_cron("0 3 * * *").timezone.utcoffset(None) == timedelta(0)


def test_the_job_store_table_does_not_upset_the_schema_check(
    settings: Settings, db: Database
) -> None:
    RetrainScheduler(settings, db).add("0 3 * * *")  # APScheduler creates its table
    schema_revision.check_models(db)  # raises if Alembic saw a difference


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        server.chats[ADMIN["id"]] = tg.private_chat(ADMIN)  # the admin has talked to the bot
        yield server


@pytest.mark.slow  # a real fine-tune
async def test_a_schedule_survives_a_restart_fires_trains_and_tells_the_admins(
    settings: Settings, db: Database, fake: FakeTelegram
) -> None:
    settings = settings.model_copy(
        update={
            "telegram": TelegramSettings(
                token=SecretStr(fake.token), base_url=fake.base_url, admin_ids=[ADMIN["id"]]
            )
        }
    )
    first = RetrainScheduler(settings, db)
    first.start()
    nightly = first.add("0 3 * * *")
    first.shutdown()
    seed_pattern(db)

    # A new process: its own engine on the same database, a new scheduler.
    restarted_db = Database(db.url)
    second = RetrainScheduler(settings, restarted_db)
    second.start()
    try:
        assert [s.id for s in second.list()] == [nightly.id]
        second.run_soon(nightly.id, datetime.now(UTC) + timedelta(seconds=1))

        [report] = await fake.wait_for_message(ADMIN["id"], timeout=90)

        lines = report["text"].splitlines()
        assert lines[0].startswith("Retraining run 1: promoted r1-")
        assert lines[1].startswith("Pairs: 8 new (8 human)")
        assert lines[2].startswith("Base perplexity: ") and lines[3].startswith("New-pair")
        active = restarted_db.read(model_versions.get_active_version)
        assert active is not None and lines[0].split()[4] == active.name
        # After firing, the schedule is still there for tomorrow night.
        [after] = second.list()
        assert after.next_run is not None and (after.next_run.hour, after.next_run.minute) == (3, 0)
    finally:
        second.shutdown()
        restarted_db.dispose()
