"""`/readyz`: may this process be sent work? Each check says yes or no and why; the process is
ready when all say yes.

- `database`: it answers, at the schema revision this code needs (`storage.schema_revision`),
  and the bot's own last use of it did not fail (a file turned read-only answers reads);
- `model`: a model is loaded (`bot.model_slot`), and which version;
- `updates`: the source of updates runs (the polling loop, or the webhook server accepting).

The database check runs in a worker thread with a deadline, so a server that hangs makes the
answer "not ready", not a probe that times out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bot.model_slot import ModelSlot
from storage import schema_revision
from storage.database import Database
from storage.errors import StorageError
from storage.faults import describe

CHECK_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
            "reasons": [f"{c.name}: {c.detail}" for c in self.checks if not c.ok],
        }


# What the update source says: None while it runs, else why it does not.
SourceState = Callable[[], str | None]


class ReadinessProbe:
    def __init__(
        self,
        db: Database,
        models: ModelSlot,
        source: SourceState,
        database_failing: Callable[[], bool] = lambda: False,
        timeout_seconds: float = CHECK_TIMEOUT_SECONDS,
    ) -> None:
        self.db = db
        self.models = models
        self.source = source
        self.database_failing = database_failing
        self.timeout_seconds = timeout_seconds

    async def check(self) -> Readiness:
        return Readiness((await self._database(), self._model(), self._updates()))

    async def _database(self) -> Check:
        try:
            status = await asyncio.wait_for(
                asyncio.to_thread(schema_revision.schema_status, self.db), self.timeout_seconds
            )
        except TimeoutError:
            return Check("database", False, f"no answer within {self.timeout_seconds:g} s")
        except StorageError as exc:
            return Check("database", False, str(exc))
        except Exception as exc:  # a driver error while reading the revision
            return Check("database", False, describe(exc))
        if not status.up_to_date:
            current = ", ".join(status.current) or "no schema"
            return Check(
                "database", False, f"schema at {current}, code needs {', '.join(status.heads)}"
            )
        if self.database_failing():
            return Check("database", False, "the bot's last write failed; waiting for it")
        return Check("database", True, f"schema at {', '.join(status.current)}")

    def _model(self) -> Check:
        version = self.models.current().version
        return Check("model", True, f"version {version}")

    def _updates(self) -> Check:
        why = self.source()
        return Check("updates", why is None, why or "running")
