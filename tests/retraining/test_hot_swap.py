"""Hot swap under load: while a new version is activated, every message is answered, each by
exactly one version, and the stored reply names the version that made it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.dialogue import Answer, DialogueService, Incoming
from bot.model_slot import ModelSlot
from config import DecodingSettings, DialogueSettings
from nlp.responder import Responder
from storage import conversations, model_versions
from storage.database import Database
from tests.support.tiny_model import TINY_PAIRS, train_tiny, write_pairs

CONTEXTS = [context for context, _ in TINY_PAIRS]


@pytest.fixture
def v2_dir(tmp_path: Path) -> Path:
    """A model that answers each question with the next question's reply."""
    shifted = [(c, TINY_PAIRS[(i + 1) % len(TINY_PAIRS)][1]) for i, (c, _) in enumerate(TINY_PAIRS)]
    out = tmp_path / "v2"
    train_tiny(out, write_pairs(tmp_path / "shifted.tsv", shifted))
    return out


def _wave(service: DialogueService, wave: int, chats: int = 24) -> list[asyncio.Task[Answer]]:
    return [
        asyncio.create_task(
            service.respond(
                Incoming("console", f"chat-{chat}", f"user-{chat}", CONTEXTS[(chat + wave) % 20])
            )
        )
        for chat in range(chats)
    ]


@pytest.mark.slow  # trains a second version
async def test_messages_during_an_activation_are_each_answered_by_one_version(
    db: Database, model_dir: Path, v2_dir: Path
) -> None:
    expected = {
        name: dict(zip(CONTEXTS, Responder(path).reply(CONTEXTS), strict=True))
        for name, path in (("v1", model_dir), ("v2", v2_dir))
    }
    assert sum(expected["v1"][c] != expected["v2"][c] for c in CONTEXTS) >= 15
    with db.begin() as s:
        model_versions.register_version(s, "v1", str(model_dir))
        model_versions.activate_version(s, "v1")
        model_versions.register_version(s, "v2", str(v2_dir))
    slot = ModelSlot(model_dir, DecodingSettings(), db, check_every_s=0.0)
    service = DialogueService(db, slot, DialogueSettings(max_batch_size=8))
    try:
        before = await asyncio.gather(*_wave(service, 0))
        during_tasks = [*_wave(service, 1), *_wave(service, 2)]
        for answered, finished in enumerate(asyncio.as_completed(during_tasks), start=1):
            await finished
            if answered == 8:  # one batch answered, five more to go: activate now
                break
        await asyncio.to_thread(db.transact, model_versions.activate_version, "v2")
        during = await asyncio.gather(*during_tasks)
        after = await asyncio.gather(*_wave(service, 3))
    finally:
        await service.close()

    assert {a.model_version for a in before} == {"v1"}
    assert {a.model_version for a in after} == {"v2"}
    assert {a.model_version for a in during} == {"v1", "v2"}  # the swap happened mid-stream
    for answers, waves in ((before, [0]), (during, [1, 2]), (after, [3])):
        asked = [CONTEXTS[(chat + w) % 20] for w in waves for chat in range(24)]
        for question, answer in zip(asked, answers, strict=True):
            assert answer.generated and answer.reply_id is not None
            assert answer.text == expected[answer.model_version][question]  # type: ignore[index]
            stored = db.read(conversations.get_turn, answer.reply_id)
            assert stored is not None
            assert (stored.text, stored.model_version) == (answer.text, answer.model_version)
