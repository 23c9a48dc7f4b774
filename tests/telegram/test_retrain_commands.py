"""/retrain, /teach, /schedule, /rollback for admins only; /optout and /optin for everyone; a
retraining started from Telegram teaches the running bot a new pattern."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot import answers, command_replies
from bot.app import build_app
from bot.retraining.scheduler import RetrainScheduler
from bot.retraining.service import RetrainService
from bot.telegram import build_application, retrain_phrases, running
from config import DialogueSettings, Settings
from storage import model_versions, privacy, teaching, training_runs
from tests.support.fake_telegram import FakeTelegram
from tests.support.fake_telegram import updates as tg
from tests.support.retraining import PATTERN, PATTERN_REPLY, fast_retrain
from tests.telegram.harness import ADMIN, ADMIN_ID, ANN, BOB, Harness

ADMIN_ONLY = [
    "/retrain",
    "/retrain force",
    "/teach what is your favourite colour? => blue like the sky.",
    "/schedule",
    "/schedule 0 3 * * *",
    "/schedule off",
    "/rollback",
]


@pytest.fixture
async def rbot(
    fake: FakeTelegram,
    make_settings: Callable[..., Settings],
    tiny_model_dir: Path,
    tiny_pairs_file: Path,
    tmp_path: Path,
) -> AsyncIterator[Harness]:
    """The bot with fast retraining settings and its own copy of the shipped model."""
    shipped = shutil.copytree(tiny_model_dir, tmp_path / "shipped" / "default")
    # This file is about the commands and the bot learning a pattern, not about the gate's bound
    # (tests/retraining/test_gate.py): on the tiny base set the candidate's base perplexity
    # varies from run to run by more than the default 5 % (seen: 1.058 and 1.065 against a limit
    # of 1.057, about one run in four, before and after this session's changes).
    retrain = fast_retrain(tiny_pairs_file, ppl_tolerance=0.15)
    settings = make_settings().model_copy(update={"model_dir": shipped, "retrain": retrain})
    app = build_app(settings)
    try:
        async with running(build_application(app)) as bot:
            yield Harness(fake, app, bot)
    finally:
        await app.close()


async def _answer(bot: Harness, sender: dict[str, Any], text: str) -> str:
    """The next message the bot sends to `sender`'s private chat after `sender` says `text`."""
    before = len(bot.fake.sent(sender["id"]))
    bot.fake.say(sender, text)
    sent = await bot.fake.wait_for_message(sender["id"], before + 1, timeout=60)
    return str(sent[before]["text"])


@pytest.mark.parametrize("command", ADMIN_ONLY)
async def test_admin_commands_are_not_allowed_for_anyone_else_and_do_nothing(
    rbot: Harness, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def untouchable(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{command} did something for a non-admin")

    for cls, name in ((RetrainService, "start"), (RetrainScheduler, "list")):
        monkeypatch.setattr(cls, name, untouchable)

    assert await _answer(rbot, ANN, command) == answers.NOT_ALLOWED
    await rbot.settle()
    db = rbot.app.db
    assert db.read(training_runs.list_runs) == []
    assert db.read(teaching.list_taught_pairs) == []
    monkeypatch.undo()
    assert RetrainScheduler(rbot.app.settings, db).list() == []
    assert db.read(model_versions.list_versions) == []


async def test_teach_stores_a_pair_for_the_next_retraining(rbot: Harness) -> None:
    reply = await _answer(rbot, ADMIN, "/teach  What is your favourite colour?  =>  Blue! ")
    assert reply == command_replies.TEACH_DONE.format(
        context="What is your favourite colour?", reply="Blue!"
    )
    [taught] = rbot.app.db.read(teaching.list_taught_pairs)
    assert (taught.context, taught.reply) == ("What is your favourite colour?", "Blue!")
    assert taught.user_id == rbot.user_id(ADMIN_ID)
    for malformed in ("/teach", "/teach hello", "/teach => hi", "/teach hello =>"):
        assert await _answer(rbot, ADMIN, malformed) == command_replies.TEACH_USAGE
    assert len(rbot.app.db.read(teaching.list_taught_pairs)) == 1


async def test_schedule_shows_sets_and_stops_and_a_malformed_cron_changes_nothing(
    rbot: Harness,
) -> None:
    assert await _answer(rbot, ADMIN, "/schedule") == retrain_phrases.SCHEDULE_NONE.format(
        timezone="UTC"
    )
    set_reply = await _answer(rbot, ADMIN, "/schedule 0 3 * * *")
    assert set_reply.startswith("Retraining scheduled: 0 3 * * * (UTC); next run ")
    assert set_reply.endswith(" 03:00 UTC.")

    bad = await _answer(rbot, ADMIN, "/schedule 0 3 * *")
    assert bad.startswith("invalid cron expression '0 3 * *': expected 5 fields")
    assert "Example: /schedule 0 3 * * *" in bad
    bad = await _answer(rbot, ADMIN, "/schedule 99 3 * * *")
    assert bad.startswith("invalid cron expression '99 3 * * *'")
    shown = await _answer(rbot, ADMIN, "/schedule")
    assert shown.startswith("Retraining schedule (UTC):\n0 3 * * * (next run ")

    assert await _answer(rbot, ADMIN, "/schedule 30 4 * * *")
    assert [s.cron for s in RetrainScheduler(rbot.app.settings, rbot.app.db).list()] == [
        "30 4 * * *"
    ]
    assert await _answer(rbot, ADMIN, "/schedule off") == retrain_phrases.SCHEDULE_OFF
    assert await _answer(rbot, ADMIN, "/schedule off") == retrain_phrases.SCHEDULE_OFF_NONE


async def test_rollback_goes_back_one_version(rbot: Harness, tmp_path: Path) -> None:
    copy = shutil.copytree(rbot.app.settings.model_dir, tmp_path / "v2")

    def register(session: Any) -> None:
        model_versions.register_version(session, "default", str(rbot.app.settings.model_dir))
        model_versions.activate_version(session, "default")
        model_versions.register_version(session, "v2", str(copy))
        model_versions.activate_version(session, "v2")

    rbot.app.db.transact(register)
    assert await _answer(rbot, ADMIN, "/rollback") == command_replies.ROLLBACK_DONE.format(
        version="default"
    )
    assert rbot.app.db.read(model_versions.get_active_version).name == "default"  # type: ignore[union-attr]
    reply = await _answer(rbot, ADMIN, "/rollback")
    assert reply.startswith("Nothing to roll back to: no earlier model version was active")


async def test_anyone_can_opt_out_of_training_and_back_in(rbot: Harness) -> None:
    assert await _answer(rbot, ANN, "/optout") == command_replies.OPTOUT_DONE
    ann = rbot.user_id(ANN["id"])
    assert ann is not None and rbot.app.db.read(privacy.is_opted_out, ann)
    assert await _answer(rbot, ANN, "/optin") == command_replies.OPTIN_DONE
    assert not rbot.app.db.read(privacy.is_opted_out, ann)


async def test_retrain_teaches_the_running_bot_a_new_pattern(rbot: Harness) -> None:
    too_few = await _answer(rbot, ADMIN, "/retrain")
    assert too_few.startswith("Not retraining: only 0 new training pairs")

    # People talk among themselves in groups (the bot is not addressed, it only listens), three
    # of them taking turns, so that the pattern's new words may join the vocabulary ...
    people = [ANN, BOB, tg.user(103, "Cy")]
    for n, question in enumerate(PATTERN[1:]):
        group = tg.group_chat(-3000 - n, f"Group {n}")
        rbot.fake.say(people[n % 3], question, chat=group)
        rbot.fake.say(people[(n + 1) % 3], PATTERN_REPLY, chat=group)
    # ... and an admin teaches the same answer to the first question.
    await _answer(rbot, ADMIN, f"/teach {PATTERN[0]} => {PATTERN_REPLY}")
    await rbot.settle()
    before = await _answer(rbot, ANN, PATTERN[0])
    assert before.lower() != PATTERN_REPLY

    started = await _answer(rbot, ADMIN, "/retrain")
    assert started.startswith(f"Retraining run 1 started on {len(PATTERN)} new pairs")
    busy = await _answer(rbot, ADMIN, "/retrain")
    assert busy.startswith("Not retraining: a retraining is already running (run 1, started ")
    # The bot keeps answering while the run goes on.
    assert await _answer(rbot, ANN, "hello") == "Hi there!"

    reports = await rbot.fake.wait_for_message(ADMIN_ID, 5, timeout=90)
    [result] = [m["text"] for m in reports if m["text"].startswith("Retraining run 1: ")]
    assert result.startswith("Retraining run 1: promoted r1-"), result
    assert "Base perplexity: " in result and "New-pair perplexity: " in result
    version = result.split()[4]

    await asyncio.sleep(rbot.app.models.check_every_s)  # the bot checks the registry this often
    answer = await _answer(rbot, ANN, PATTERN[0])
    assert answer.lower() == PATTERN_REPLY
    assert rbot.turns(ANN["id"])[-1].model_version == version
    status = await _answer(rbot, ADMIN, "/status")
    assert f"Model: {version} (registry)" in status
    assert "Last training run: run 1 promoted" in status


async def test_teach_refuses_a_side_longer_than_the_input_limit(start_bot: Any) -> None:
    async with start_bot(dialogue=DialogueSettings(max_input_chars=40)) as bot:
        refused = answers.TEACH_TOO_LONG.format(limit=40)
        assert await _answer(bot, ADMIN, f"/teach {'x' * 41} => hi") == refused
        assert await _answer(bot, ADMIN, f"/teach hi => {'y' * 41}") == refused
        assert bot.app.db.read(teaching.list_taught_pairs) == []

        done = await _answer(bot, ADMIN, f"/teach {'x' * 40} => hi")
        assert done == command_replies.TEACH_DONE.format(context="x" * 40, reply="hi")
        assert len(bot.app.db.read(teaching.list_taught_pairs)) == 1
