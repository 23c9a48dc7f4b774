"""The real `chatbot telegram` process for the tests that kill it, starve it of its database or
start it where it must refuse to run: its environment, start, wait, stop, kill."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from tests.support.fake_telegram import FakeTelegram

REPO_ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


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
    args: list[str], env: dict[str, str], log: Path
) -> asyncio.subprocess.Process:
    """`chatbot ARGS...`, its output appended to `log` (a file: output must never block it)."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; from bot.cli import main; sys.exit(main())",
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
