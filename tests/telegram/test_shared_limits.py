"""Limits shared by replicas: with `CHATBOT_REDIS_URL` the per-user rate limit and the outgoing
flood limits are counted in Redis, so two replicas (two limiter instances, two processes, two
webhook servers) enforce one limit; without it each process counts alone; when Redis stops
answering each replica limits on its own, says so once, and shares again once Redis is back.

Against the local Redis (the `redis_*` fixtures of tests/conftest.py: skipped, with the reason,
only when it does not answer; each test has its own key prefix, deleted after).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from telegram.error import RetryAfter

from bot import answers
from bot.app import build_app
from bot.cli import main
from bot.telegram import build_application, running
from bot.telegram.flood_control import ChatFloodLimiter
from bot.telegram.flood_limits import LocalFloodLimits
from bot.telegram.rate_limit import Decision, SlidingWindowLimiter, UserRateLimiter
from bot.telegram.redis_failover import RedisFailover
from bot.telegram.redis_flood_limits import RedisFloodLimits, window_for
from bot.telegram.redis_rate_limit import RedisSlidingWindowLimiter
from bot.telegram.shared_limits import build_limits, connect, key_prefix, without_password
from bot.telegram.webhook import WebhookConfig
from config import Settings
from tests.support.fake_telegram import FakeTelegram
from tests.support.tcp_proxy import TcpProxy
from tests.telegram.harness import ANN, Harness

ALLOW, WARN, DROP = Decision.ALLOW, Decision.WARN, Decision.DROP
FAILOVER_LOG = "bot.telegram.redis_failover"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _failover(where: str = "test", retry_seconds: float = 1.0) -> RedisFailover:
    return RedisFailover(where, retry_seconds=retry_seconds)


# ---- the per-user limit: one behaviour, two implementations ---------------------------------


@pytest.fixture(params=["memory", "redis"])
def user_limiter(
    request: pytest.FixtureRequest,
) -> Callable[[int, float], UserRateLimiter]:
    """Makes a limiter of each kind: the contract below holds for both."""
    if request.param == "memory":
        return lambda n, seconds: SlidingWindowLimiter(n, seconds)
    new = request.getfixturevalue("redis_clients")
    redis_prefix = request.getfixturevalue("redis_prefix")
    return lambda n, seconds: RedisSlidingWindowLimiter(
        new(), redis_prefix, n, seconds, _failover()
    )


async def test_the_window_admits_n_then_warns_once_then_drops(
    user_limiter: Callable[[int, float], UserRateLimiter],
) -> None:
    limiter = user_limiter(3, 60.0)
    assert [await limiter.check(1) for _ in range(6)] == [ALLOW] * 3 + [WARN] + [DROP] * 2


async def test_people_are_limited_separately_and_zero_turns_limiting_off(
    user_limiter: Callable[[int, float], UserRateLimiter],
) -> None:
    limiter = user_limiter(1, 60.0)
    assert [await limiter.check(1), await limiter.check(2), await limiter.check(1)] == [
        ALLOW,
        ALLOW,
        WARN,
    ]
    off = user_limiter(0, 60.0)
    assert {await off.check(1) for _ in range(20)} == {ALLOW}


async def test_the_window_slides_and_refused_messages_do_not_count(
    user_limiter: Callable[[int, float], UserRateLimiter],
) -> None:
    limiter = user_limiter(2, 0.5)
    started = time.monotonic()
    assert [await limiter.check(1) for _ in range(4)] == [ALLOW, ALLOW, WARN, DROP]

    async def admitted() -> bool:
        return await limiter.check(1) is ALLOW

    while not await admitted():  # the refused checks never entered the window
        assert time.monotonic() - started < 10, "the window never slid"
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.5


# ---- the per-user limit in Redis: shared by replicas ----------------------------------------


async def test_two_replicas_count_a_person_in_one_window(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    one = RedisSlidingWindowLimiter(redis_clients(), redis_prefix, 3, 60.0, _failover())
    two = RedisSlidingWindowLimiter(redis_clients(), redis_prefix, 3, 60.0, _failover())
    decisions = [await one.check(1), await two.check(1), await one.check(1)]
    decisions += [await two.check(1), await one.check(1), await two.check(2)]
    assert decisions == [ALLOW, ALLOW, ALLOW, WARN, DROP, ALLOW]


async def test_an_update_taken_over_by_another_replica_is_counted_once(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    one = RedisSlidingWindowLimiter(redis_clients(), redis_prefix, 2, 60.0, _failover())
    two = RedisSlidingWindowLimiter(redis_clients(), redis_prefix, 2, 60.0, _failover())
    assert [await one.check(1, event=n) for n in ("100", "101")] == [ALLOW, ALLOW]
    # `one` dies before update 101 is done; `two` takes it over and checks it again, the
    # window full with it: admitted, not counted again
    assert await two.check(1, event="101") is ALLOW
    assert [await two.check(1, event=n) for n in ("102", "103")] == [WARN, DROP]


async def test_concurrent_checks_of_two_replicas_admit_exactly_the_limit(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    replicas = [
        RedisSlidingWindowLimiter(redis_clients(), redis_prefix, 10, 60.0, _failover())
        for _ in "ab"
    ]
    decisions = await asyncio.gather(*(replicas[i % 2].check(7) for i in range(40)))
    assert Counter(decisions) == {ALLOW: 10, WARN: 1, DROP: 29}


async def test_every_key_is_under_the_prefix_and_expires(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    client = redis_clients()
    limiter = RedisSlidingWindowLimiter(client, redis_prefix, 1, 30.0, _failover())
    await limiter.check(1)
    await limiter.check(1)  # warned: the flag key too
    flood = RedisFloodLimits(client, redis_prefix, _failover(), 30, 20)
    await flood.acquire(-100)
    await flood.pause(5, 2.0)
    keys = sorted([key.decode() async for key in client.scan_iter(match=f"{redis_prefix}:*")])
    assert keys == [
        f"{redis_prefix}:flood:all",
        f"{redis_prefix}:flood:group:-100",
        f"{redis_prefix}:flood:pause:5",
        f"{redis_prefix}:rate:{{1}}",
        f"{redis_prefix}:rate:{{1}}:warned",
    ]
    ttls = {key: await client.pttl(key) for key in keys}
    assert all(0 < ttl <= 60_000 for ttl in ttls.values()), ttls


CHECKS_IN_A_PROCESS = textwrap.dedent(
    """
    import asyncio, pathlib, sys, types

    # Only the limiter's modules: the package's __init__ builds the whole Telegram stack (torch
    # included), which took 8 s of a loaded machine's wall time per process against 0.5 s.
    package = types.ModuleType("bot.telegram")
    package.__path__ = [str(pathlib.Path("bot/telegram").resolve())]
    sys.modules["bot.telegram"] = package

    from bot.telegram.redis_failover import RedisFailover
    from bot.telegram.redis_rate_limit import RedisSlidingWindowLimiter
    from bot.telegram.shared_limits import connect

    async def main():
        client = connect(sys.argv[1])
        limiter = RedisSlidingWindowLimiter(client, sys.argv[2], 10, 60.0, RedisFailover("t"))
        sys.stdin.readline()  # both processes are up: start together
        decisions = [await limiter.check(42) for _ in range(15)]
        print(" ".join(d.value for d in decisions))
        await client.aclose()

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_two_processes_share_one_limit(redis_url: str, redis_prefix: str) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CHECKS_IN_A_PROCESS, redis_url, redis_prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate("go\n", timeout=30) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err
    decisions = Counter(word for out, _ in outputs for word in out.split())
    assert decisions == {"allow": 10, "warn": 1, "drop": 19}


# ---- outgoing flood limits in Redis -----------------------------------------------------------


async def test_a_retry_after_met_by_one_replica_pauses_that_chat_in_the_other(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    one = ChatFloodLimiter(RedisFloodLimits(redis_clients(), redis_prefix, _failover(), 0, 0))
    two = ChatFloodLimiter(RedisFloodLimits(redis_clients(), redis_prefix, _failover(), 0, 0))
    calls: list[Any] = []

    async def refused(**kwargs: Any) -> Any:
        calls.append(kwargs["chat_id"])
        raise RetryAfter(20)

    async def sent(**kwargs: Any) -> Any:
        calls.append(kwargs["chat_id"])
        return True

    def send(limiter: ChatFloodLimiter, call: Any, chat_id: int) -> Any:
        data = {"chat_id": chat_id}
        return limiter.process_request(call, (), data, "sendMessage", data, None)

    with pytest.raises(RetryAfter):
        await send(one, refused, 1)
    assert 19 < await two.paused_for(1) <= 20
    assert await two.paused_for(2) == 0
    with pytest.raises(RetryAfter):  # refused by the other replica without a request
        await send(two, sent, 1)
    assert await send(two, sent, 2) is True  # another chat goes at once
    assert calls == [1, 2]


async def test_pauses_keep_the_longer_and_one_without_a_chat_pauses_all(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    one = RedisFloodLimits(redis_clients(), redis_prefix, _failover(), 0, 0)
    two = RedisFloodLimits(redis_clients(), redis_prefix, _failover(), 0, 0)
    await one.pause(1, 20)
    await two.pause(1, 5)  # a shorter pause does not cut the longer one short
    assert 19 < await one.paused_for(1) <= 20
    await two.pause(None, 5)
    assert 4 < await one.paused_for(7) <= 5 and 4 < await one.paused_for(None) <= 5


async def test_two_replicas_share_the_bots_overall_pace(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    # 15 requests each at 20 a second for the bot: alone, each replica would send all at once.
    replicas = [RedisFloodLimits(redis_clients(), redis_prefix, _failover(), 20, 0) for _ in "ab"]
    started = time.monotonic()
    await asyncio.gather(*(replicas[i % 2].acquire(i + 1) for i in range(30)))
    assert time.monotonic() - started >= 0.9  # 20 went at once, the other 10 a second later


async def test_two_replicas_share_a_groups_pace(
    redis_clients: Callable[[], Redis], redis_prefix: str
) -> None:
    one = RedisFloodLimits(redis_clients(), redis_prefix, _failover(), 0, 2)  # 2 a minute per group
    two = RedisFloodLimits(redis_clients(), redis_prefix, _failover(), 0, 2)
    await one.acquire(-5)
    await one.acquire(-5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(two.acquire(-5), 0.5)
    await asyncio.wait_for(two.acquire(-6), 5)  # another group, and a private chat, at once
    await asyncio.wait_for(two.acquire(5), 5)


def test_a_fractional_rate_becomes_a_window_of_whole_requests() -> None:
    assert window_for(30, 1) == (30, 1000)
    assert window_for(2.5, 1) == (2, 800)
    assert window_for(0.5, 60) == (1, 120_000)


# ---- Redis that stops answering ----------------------------------------------------------------


async def test_without_redis_each_replica_limits_alone_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = connect("redis://127.0.0.1:1/0")  # nothing listens there
    try:
        limiter = RedisSlidingWindowLimiter(client, "p", 2, 60.0, _failover("127.0.0.1:1", 0))
        with caplog.at_level(logging.WARNING, logger=FAILOVER_LOG):
            started = time.monotonic()
            decisions = [await limiter.check(1) for _ in range(4)]
            took = time.monotonic() - started
        assert decisions == [ALLOW, ALLOW, WARN, DROP]
        assert took < 4  # each try fails at once: connection refused
        [line] = [r.getMessage() for r in caplog.records if r.name == FAILOVER_LOG]
        assert line.startswith("Redis at 127.0.0.1:1 does not answer (ConnectionError")
        assert line.endswith("rate limits are per replica until it does")
    finally:
        await client.aclose()


async def test_a_redis_outage_falls_back_to_local_limits_and_back_logging_each_change_once(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    client = connect(target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl())
    failover = _failover("proxy", retry_seconds=0.05)
    limiter = RedisSlidingWindowLimiter(client, redis_prefix, 2, 60.0, failover)
    flood = RedisFloodLimits(client, redis_prefix, failover, 0, 0)
    try:
        with caplog.at_level(logging.WARNING, logger=FAILOVER_LOG):
            assert await limiter.check(1) is ALLOW  # counted in Redis
            await proxy.stop()
            # Down: decided in this process (which had counted nothing), pauses kept here too.
            assert [await limiter.check(1) for _ in range(4)] == [ALLOW, ALLOW, WARN, DROP]
            await flood.pause(3, 10)
            assert 9 < await flood.paused_for(3) <= 10
            assert not failover.up
            await proxy.start()

            async def shared_again() -> bool:
                await limiter.check(99)
                return failover.up

            deadline = time.monotonic() + 10
            while not await shared_again():
                assert time.monotonic() < deadline, "Redis never taken back"
                await asyncio.sleep(0.02)
            # Back in Redis, where user 1 had one message counted before the outage.
            assert [await limiter.check(1) for _ in range(2)] == [ALLOW, WARN]
        lines = [r.getMessage() for r in caplog.records if r.name == FAILOVER_LOG]
        assert len(lines) == 2, lines
        assert "does not answer" in lines[0] and "answers again" in lines[1]
    finally:
        await client.aclose()
        await proxy.stop()


# ---- where the limits live is chosen in one place, from the settings -------------------------


def test_without_a_redis_url_the_limits_are_in_process() -> None:
    limits = build_limits(Settings(_env_file=None))
    assert isinstance(limits.users, SlidingWindowLimiter)
    assert isinstance(limits.flood, LocalFloodLimits)


async def test_with_a_redis_url_the_limits_are_in_redis_under_the_prefix_and_bot_id() -> None:
    settings = Settings(
        _env_file=None,
        redis_url=SecretStr("redis://:s3cret@127.0.0.1:6379/0"),
        redis_key_prefix="mybot",
        telegram_token=SecretStr("123456:ABC-secret"),
    )
    limits = build_limits(settings)
    assert isinstance(limits.users, RedisSlidingWindowLimiter)
    assert isinstance(limits.flood, RedisFloodLimits)
    assert limits.users.prefix == limits.flood.prefix == "mybot:123456" == key_prefix(settings)
    assert limits.users.failover.where == "redis://:***@127.0.0.1:6379/0"
    await limits.flood.close()


def test_a_password_never_reaches_the_log() -> None:
    assert without_password("redis://u:pw@h:1/2") == "redis://u:***@h:1/2"
    assert without_password("redis://h") == "redis://h"
    assert without_password("redis://h:1/0?password=pw&db=2") == "redis://h:1/0"


def test_chatbot_redis_url_is_read_and_a_bad_one_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("CHATBOT_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("CHATBOT_REDIS_KEY_PREFIX", "staging")
    settings = Settings()
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://127.0.0.1:6379/3"
    assert settings.redis_key_prefix == "staging"
    monkeypatch.setenv("CHATBOT_REDIS_URL", "")
    assert Settings().redis_url is None

    monkeypatch.setenv("CHATBOT_REDIS_URL", "http://127.0.0.1:6379")
    assert main(["model", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "redis_url" in err and "redis://" in err, err


# ---- through the real stack: two webhook replicas -------------------------------------------


async def test_a_person_limited_through_one_replica_is_limited_through_the_other(
    fake: FakeTelegram,
    make_settings: Callable[..., Settings],
    sqlite_template: Path,
    tmp_path: Path,
    redis_prefix: str,
    redis_url: str,
) -> None:
    """Two webhook replicas that share nothing but Redis (each its own database, so each handles
    exactly what the load balancer gave it: 3 and 2 of one person's 5 messages). Each alone
    would answer all of its messages; sharing the limit of 3, they answer 3 and warn once."""
    second_db = tmp_path / "second.db"
    shutil.copyfile(sqlite_template, second_db)
    shared = {"redis_url": SecretStr(redis_url), "redis_key_prefix": redis_prefix}
    settings = [
        make_settings(database_url=url, rate_limit_messages=3, rate_limit_seconds=60).model_copy(
            update=shared
        )
        for url in (None, f"sqlite:///{second_db}")
    ]
    config = WebhookConfig("https://bot.example.org/hook", "replica-secret", port=0)
    apps = [build_app(s) for s in settings]
    try:
        async with (
            running(build_application(apps[0]), config) as one,
            running(build_application(apps[1]), config) as two,
        ):
            assert one.webhook is not None and two.webhook is not None
            fake.route_webhook(
                f"http://127.0.0.1:{one.webhook.port}/hook",
                f"http://127.0.0.1:{two.webhook.port}/hook",
            )
            for text in ["hello", "how are you?", "bye", "thank you", "good night"]:
                fake.say(ANN, text)
            await fake.wait_for_message(ANN["id"], 4, timeout=30)
            for app, replica in zip(apps, (one, two), strict=True):  # all handled, all sent
                await Harness(fake, app, replica).settle(timeout=30)
            handled = sorted([one.dispatcher.handled, two.dispatcher.handled])
        sent = [m["text"] for m in fake.sent(ANN["id"])]
        assert handled == [2, 3]
        assert len(sent) == 4 and sent.count(answers.SLOW_DOWN) == 1, sent
    finally:
        for app in apps:
            await app.close()
