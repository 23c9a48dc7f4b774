"""/reset is stored, not remembered: it holds in another replica (another `DialogueService` on the
same database) and in a process started after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.batching import Generated
from bot.dialogue import DialogueService, Incoming
from bot.model_slot import ModelSlot
from config import DecodingSettings, DialogueSettings
from nlp.responder import Context
from storage.database import Database


class Replica:
    """A dialogue service with its own model slot and connections, recording what each decode
    was given as context."""

    def __init__(self, url: str, model_dir: Path) -> None:
        self.db = Database(url)
        self.service = DialogueService(
            self.db, ModelSlot(model_dir, DecodingSettings(), self.db), DialogueSettings()
        )
        self.contexts: list[list[str]] = []
        generate = self.service.batcher.generate

        async def spy(context: Context) -> Generated:
            self.contexts.append(list(context))
            return await generate(context)

        self.service.batcher.generate = spy  # type: ignore[method-assign]

    async def say(self, text: str, chat: str = "c1") -> list[str]:
        """Send `text`; the context the model was given for it."""
        decoded = len(self.contexts)
        await self.service.respond(Incoming("console", chat, "u1", text))
        assert len(self.contexts) == decoded + 1, f"{text!r} was not given to the model"
        return self.contexts[-1]

    async def close(self) -> None:
        await self.service.close()
        self.db.dispose()


@pytest.fixture
def url(database: Database) -> str:
    return database.url.render_as_string(hide_password=False)


async def test_a_reset_through_one_replica_holds_in_the_other(
    url: str, three_turn_model_dir: Path
) -> None:
    a, b = Replica(url, three_turn_model_dir), Replica(url, three_turn_model_dir)
    try:
        await a.say("hello")
        assert (await b.say("how are you?"))[0] == "hello"  # one chat, whichever replica
        await a.service.reset("console", "c1")
        assert await b.say("bye") == ["bye"]
        assert await b.say("hello", chat="c2") == ["hello"]  # other chats are untouched
        assert len(await a.say("thank you", chat="c2")) == 3
    finally:
        await a.close()
        await b.close()


async def test_a_reset_survives_a_restart(url: str, three_turn_model_dir: Path) -> None:
    before = Replica(url, three_turn_model_dir)
    try:
        await before.say("hello")
        await before.say("how are you?")
        await before.service.reset("console", "c1")
    finally:
        await before.close()
    after = Replica(url, three_turn_model_dir)
    try:
        assert await after.say("bye") == ["bye"]
        context = await after.say("good night")
        assert (len(context), context[0], context[-1]) == (3, "bye", "good night")
    finally:
        await after.close()
