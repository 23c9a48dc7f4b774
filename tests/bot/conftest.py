from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bot.dialogue import DialogueService
from bot.model_slot import ModelSlot
from config import DecodingSettings, DialogueSettings
from storage import schema_revision
from storage.database import Database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'bot.db'}")
    schema_revision.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def models(tiny_model_dir: Path, db: Database) -> ModelSlot:
    return ModelSlot(tiny_model_dir, DecodingSettings(), db)


@pytest.fixture
async def service(db: Database, models: ModelSlot) -> AsyncIterator[DialogueService]:
    svc = DialogueService(db, models, DialogueSettings(context_turns=3, max_input_chars=200))
    yield svc
    await svc.close()
