"""The /export cooldown: one export per person per cooldown, in the process or (with
`CHATBOT_REDIS_URL`) in Redis, where every replica refuses a second export; the update that
started a cooldown is let through again (handled a second time, by this or another replica);
Redis not answering leaves each replica deciding alone.

Against the local Redis (the `redis_*` fixtures of tests/conftest.py: skipped, with the reason,
only when it does not answer)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from bot.telegram.export_cooldown import ExportCooldown, LocalExportCooldown, minutes
from bot.telegram.redis_export_cooldown import RedisExportCooldown
from bot.telegram.redis_failover import RedisFailover
from bot.telegram.shared_limits import build_limits, connect
from config import Settings, TelegramSettings

COOLDOWN = 600.0


@pytest.fixture(params=["memory", "redis"])
def new_cooldown(request: pytest.FixtureRequest) -> Callable[[float], ExportCooldown]:
    """Makes a cooldown of each kind: the contract below holds for both."""
    if request.param == "memory":
        return LocalExportCooldown
    clients = request.getfixturevalue("redis_clients")
    prefix = request.getfixturevalue("redis_prefix")
    return lambda seconds: RedisExportCooldown(clients(), prefix, seconds, RedisFailover("test"))


async def test_one_export_per_person_per_cooldown(
    new_cooldown: Callable[[float], ExportCooldown],
) -> None:
    cooldown = new_cooldown(COOLDOWN)

    assert await cooldown.try_start(1, event="10") == 0.0
    wait = await cooldown.try_start(1, event="11")
    assert COOLDOWN - 5 < wait <= COOLDOWN
    assert await cooldown.try_start(2, event="12") == 0.0  # per person
    assert await cooldown.try_start(1, event="10") == 0.0  # the update that started it, again
    assert await cooldown.try_start(1, event="13") > 0.0  # ... which did not restart it


async def test_a_cooldown_of_zero_is_off(new_cooldown: Callable[[float], ExportCooldown]) -> None:
    cooldown = new_cooldown(0)
    assert [await cooldown.try_start(1, event=str(n)) for n in range(3)] == [0.0] * 3


def test_the_cooldown_counts_only_exports_that_ran() -> None:
    now = [1000.0]
    cooldown = LocalExportCooldown(COOLDOWN, clock=lambda: now[0])

    assert cooldown.decide(1, "a") == 0.0
    now[0] += 100
    assert cooldown.decide(1, "b") == 500.0  # refused: the wait is still from the first
    now[0] += 500
    assert cooldown.decide(1, "c") == 0.0
    now[0] += 100
    assert cooldown.decide(1, "d") == 500.0  # from "c", the last export that ran


def test_the_wait_is_told_in_whole_minutes_rounded_up() -> None:
    assert [minutes(s) for s in (0.2, 60, 61, 600)] == [1, 1, 2, 10]


async def test_two_replicas_share_the_cooldown(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    one, two = (
        RedisExportCooldown(redis_clients(), redis_prefix, COOLDOWN, RedisFailover("test"))
        for _ in "ab"
    )

    assert await one.try_start(7, event="100") == 0.0
    assert await two.try_start(7, event="101") > COOLDOWN - 5  # exported through the other
    assert await two.try_start(7, event="100") == 0.0  # taken over after `one` died: not refused
    assert await one.try_start(8, event="102") == 0.0
    assert await two.try_start(8, event="103") > 0.0


async def test_the_cooldown_ends_by_the_key_expiring(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    client = redis_clients()
    one = RedisExportCooldown(client, redis_prefix, 0.3, RedisFailover("test"))
    two = RedisExportCooldown(redis_clients(), redis_prefix, 0.3, RedisFailover("test"))
    assert await one.try_start(7, event="1") == 0.0
    assert 0 < await client.pttl(f"{redis_prefix}:export:7") <= 300

    deadline = time.monotonic() + 10  # a deadline, not a sleep: the machine may be loaded
    while await two.try_start(7, event="2") != 0.0:
        assert time.monotonic() < deadline, "the cooldown's key did not expire"
        await asyncio.sleep(0.02)
    assert await one.try_start(7, event="3") > 0.0  # the new cooldown is "2"'s


async def test_a_key_without_expiry_does_not_refuse_for_good(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    client = redis_clients()
    await client.set(f"{redis_prefix}:export:7", "left by hand")
    cooldown = RedisExportCooldown(client, redis_prefix, COOLDOWN, RedisFailover("test"))

    assert await cooldown.try_start(7, event="1") == 0.0
    assert await cooldown.try_start(7, event="2") > COOLDOWN - 5
    assert await client.pttl(f"{redis_prefix}:export:7") > 0


async def test_without_redis_each_replica_decides_alone(caplog: pytest.LogCaptureFixture) -> None:
    client = connect("redis://127.0.0.1:1/0")  # nothing listens there
    cooldown = RedisExportCooldown(client, "test", COOLDOWN, RedisFailover("nowhere"))
    try:
        with caplog.at_level(logging.WARNING, logger="bot.telegram.redis_failover"):
            assert await cooldown.try_start(7, event="1") == 0.0
            assert await cooldown.try_start(7, event="2") > COOLDOWN - 5
            assert await cooldown.try_start(7, event="1") == 0.0
    finally:
        await client.aclose()
    assert len(caplog.records) == 1 and "does not answer" in caplog.records[0].getMessage()


async def test_build_limits_puts_the_cooldown_where_the_other_limits_are() -> None:
    telegram = TelegramSettings(token=SecretStr("123456:abc"), export_cooldown_seconds=300)
    local = build_limits(Settings(_env_file=None, telegram=telegram))
    shared = build_limits(
        Settings(
            _env_file=None,
            telegram=telegram,
            redis_url=SecretStr("redis://127.0.0.1:6379/0"),
            redis_key_prefix="mybot",
        )
    )
    try:
        assert isinstance(local.exports, LocalExportCooldown)
        assert local.exports.seconds == 300
        assert isinstance(shared.exports, RedisExportCooldown)
        assert shared.exports.prefix == "mybot:123456"
        assert shared.exports.seconds == 300
        assert shared.exports.failover is shared.users.failover  # type: ignore[attr-defined]
    finally:
        await shared.flood.close()
