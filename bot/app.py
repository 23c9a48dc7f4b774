"""Wiring: settings -> database (schema checked) -> model slot -> dialogue service."""

from __future__ import annotations

from dataclasses import dataclass

from bot.dialogue import DialogueService
from bot.model_files import model_cache_dir
from bot.model_slot import ModelSlot
from config import Settings
from storage import schema_revision
from storage.database import Database


@dataclass
class App:
    settings: Settings
    db: Database
    models: ModelSlot
    service: DialogueService

    async def close(self) -> None:
        await self.service.close()
        self.db.dispose()


def build_app(settings: Settings, *, follow_registry: bool = True) -> App:
    """Refuses an out-of-date schema (StorageError naming `chatbot db upgrade`) unless
    `CHATBOT_DB_AUTO_UPGRADE=1`. Answers with the registry's active model version (switching when
    it changes) or, with none registered or `follow_registry=False`, with `settings.model_dir`."""
    db = Database.from_settings(settings)
    try:
        schema_revision.ensure_schema(db, settings.storage.auto_upgrade)
        models = ModelSlot(
            settings.model_dir,
            settings.decoding,
            db if follow_registry else None,
            blocklist_path=settings.retrain.blocklist_path,
            cache_dir=model_cache_dir(settings),
        )
    except BaseException:
        db.dispose()
        raise
    return App(settings, db, models, DialogueService(db, models, settings.dialogue))
