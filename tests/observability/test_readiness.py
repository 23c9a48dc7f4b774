"""`/healthz` answers while the process lives; `/readyz` says 503, and why, while the database
does not answer (a throwaway PostgreSQL server stopped), and 200 again once it is back: in
polling mode (the status listener) and in webhook mode (the webhook server). And the probe's
own checks: a schema that is not current, an update source that stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.model_slot import ModelSlot
from bot.observability.readiness import ReadinessProbe
from config import DecodingSettings
from storage import schema_revision
from storage.database import Database
from tests.observability.status_http import get_json, status_url
from tests.telegram import postgres_server


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[postgres_server.ThrowawayPostgres]:
    reason = postgres_server.unavailable()
    if reason is not None:
        pytest.skip(f"no throwaway PostgreSQL server: {reason}")
    server = postgres_server.ThrowawayPostgres()
    try:
        server.start()
        migrated = Database(server.url)
        try:
            schema_revision.upgrade(migrated)
        finally:
            migrated.dispose()
        yield server
    finally:
        server.destroy()


async def _until_status(url: str, wanted: int, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await get_json(url)
        if status == wanted:
            return body
        assert time.monotonic() < deadline, f"{url} still answers {status}: {body}"
        await asyncio.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["polling", "webhook"])
async def test_readyz_is_503_while_the_database_is_down_and_200_when_it_is_back(
    mode: str,
    start_bot: Callable[..., Any],
    throwaway_postgres: postgres_server.ThrowawayPostgres,
) -> None:
    async with start_bot(throwaway_postgres.url, mode) as bot:
        ready, health = status_url(bot, "/readyz"), status_url(bot, "/healthz")
        await _until_status(ready, 200)
        await asyncio.to_thread(throwaway_postgres.stop)
        try:
            down = await _until_status(ready, 503)
            health_status, _ = await get_json(health)
        finally:
            await asyncio.to_thread(throwaway_postgres.start)
        back = await _until_status(ready, 200)

    assert down["status"] == "not ready" and not down["checks"]["database"]["ok"]
    assert [r.split(":")[0] for r in down["reasons"]] == ["database"]
    assert down["checks"]["model"]["ok"] and down["checks"]["updates"]["ok"]
    assert health_status == 200  # alive all along: not a reason to restart the process
    assert back["reasons"] == [] and back["checks"]["database"]["ok"]


@pytest.fixture
def models(tiny_model_dir: Path) -> ModelSlot:
    return ModelSlot(tiny_model_dir, DecodingSettings())


async def test_a_database_without_the_current_schema_is_not_ready(
    tmp_path: Path, models: ModelSlot
) -> None:
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        readiness = await ReadinessProbe(empty, models, lambda: None).check()
    finally:
        empty.dispose()

    assert not readiness.ready
    [reason] = readiness.to_json()["reasons"]
    assert reason.startswith("database: schema at no schema, code needs ")


async def test_a_stopped_update_source_or_a_failing_database_is_not_ready(
    database: Database, models: ModelSlot
) -> None:
    ready = await ReadinessProbe(database, models, lambda: None).check()
    stopped = await ReadinessProbe(database, models, lambda: "the polling loop has ended").check()
    failing = await ReadinessProbe(
        database, models, lambda: None, database_failing=lambda: True
    ).check()

    assert (
        ready.ready
        and ready.to_json()["checks"]["model"]["detail"] == f"version {models.current().version}"
    )
    assert stopped.to_json()["reasons"] == ["updates: the polling loop has ended"]
    assert failing.to_json()["reasons"] == ["database: the bot's last write failed; waiting for it"]
