from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.dialogue import DialogueService
from bot.model_slot import ModelSlot
from config import DecodingSettings, DialogueSettings
from nlp.checkpoint import load_checkpoint, save_checkpoint
from storage import schema_revision
from storage.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    schema_revision.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def three_turn_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, its recipe saying it reads the last three turns: the dialogue service
    takes the number of context turns from the model it answers with."""
    checkpoint = load_checkpoint(tiny_model_dir)
    checkpoint.recipe = checkpoint.recipe.model_copy(update={"context_turns": 3})
    return save_checkpoint(tmp_path_factory.mktemp("three-turns") / "tiny", checkpoint)


@pytest.fixture
def models(three_turn_model_dir: Path, db: Database) -> ModelSlot:
    return ModelSlot(three_turn_model_dir, DecodingSettings(), db)


@pytest.fixture
async def service(db: Database, models: ModelSlot) -> AsyncIterator[DialogueService]:
    svc = DialogueService(db, models, DialogueSettings(max_input_chars=200))
    yield svc
    await svc.close()
