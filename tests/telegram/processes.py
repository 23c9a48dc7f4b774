"""The real `chatbot telegram` process for the tests that kill it, starve it of its database or
start it where it must refuse to run: its environment, start, wait, stop, kill."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

import aiohttp
import pytest

from tests.support.fake_telegram import FakeTelegram
from tests.support.waiting import POLL_S

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
# `chatbot ARGS...` as the installed entry point runs it.
CHATBOT = ("-c", "import sys; from bot.cli import main; sys.exit(main())")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bot_env(
    fake: FakeTelegram, database_url: str, data_dir: Path, model_dir: Path, **extra: str
) -> dict[str, str]:
    """The environment of a bot talking to `fake`: nothing of the developer's CHATBOT_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        CHATBOT_TELEGRAM_TOKEN=fake.token,
        CHATBOT_TELEGRAM_BASE_URL=fake.base_url,
        CHATBOT_DATABASE_URL=database_url,
        CHATBOT_DATA_DIR=str(data_dir),
        CHATBOT_MODEL_DIR=str(model_dir),
        **extra,
    )
    return env


async def start_bot_process(
    args: list[str], env: dict[str, str], log: Path, *, program: Sequence[str] = CHATBOT
) -> asyncio.subprocess.Process:
    """`chatbot ARGS...` (or `python PROGRAM... ARGS...`), its output appended to `log` (a file:
    output must never block it)."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *program,
            *args,
            cwd=log.parent,
            env=env,
            stdout=out,
            stderr=out,
        )


async def unless_it_exits(
    awaited: Awaitable[T], process: asyncio.subprocess.Process, log: Path
) -> T:
    """`awaited`, unless the process exits first (then fail with the end of its log)."""
    result = asyncio.ensure_future(awaited)
    exited = asyncio.ensure_future(process.wait())
    done, _ = await asyncio.wait({result, exited}, return_when=asyncio.FIRST_COMPLETED)
    if result not in done:
        result.cancel()
        pytest.fail(f"chatbot exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    exited.cancel()
    return result.result()


async def until_healthy(
    port: int, process: asyncio.subprocess.Process, log: Path, timeout: float = 120.0
) -> None:
    """Until the webhook server on `port` answers `GET /healthz` with 200 (the process is up and
    takes updates); fails with the end of its log if the process exits first."""

    async def healthy() -> None:
        url = f"http://127.0.0.1:{port}/healthz"
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(POLL_S)

    await unless_it_exits(asyncio.wait_for(healthy(), timeout), process, log)


async def kill_hard(process: asyncio.subprocess.Process) -> None:
    """kill -9: no cleanup of any kind in the process."""
    if process.returncode is None:
        process.send_signal(signal.SIGKILL)
    await process.wait()


async def stop(process: asyncio.subprocess.Process, timeout: float = 30.0) -> int:
    """SIGTERM, and the exit code (killed if it does not stop within `timeout`)."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.wait_for(process.wait(), timeout)
    finally:
        await kill_hard(process)
