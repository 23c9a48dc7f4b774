"""The command line of metrics: `chatbot telegram --metrics-port` and `chatbot scheduler
--metrics-port`; a port that cannot be used is one line and exit 2, before anything loads."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.cli.main import main
from tests.observability.status_http import parse
from tests.telegram import processes

WELL_FORMED_TOKEN = "987654321:" + "Z" * 35
WEBHOOK_ARGS = ["telegram", "--webhook-url", "https://a.example/hook"]


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_dir: Path) -> None:
    for key in list(os.environ):
        if key.startswith("CHATBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CHATBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHATBOT_MODEL_DIR", str(tiny_model_dir))
    monkeypatch.setenv("CHATBOT_TELEGRAM_TOKEN", WELL_FORMED_TOKEN)
    monkeypatch.setenv("CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN", "cli-secret")


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def _one_line_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        code = main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    [line] = err.splitlines()
    return line


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["telegram", "--metrics-port", "0"], "--metrics-port: must be 1..65535, not 0"),
        (["telegram", "--metrics-port", "99999"], "--metrics-port: must be 1..65535, not 99999"),
        (
            [*WEBHOOK_ARGS, "--port", "8443", "--metrics-port", "8443"],
            "--metrics-port must differ from the webhook port",
        ),
        (["scheduler", "--metrics-port", "x"], "--metrics-port: "),
        (["telegram", "--webhook-url", "https://a.example/metrics"], "cannot be /metrics"),
    ],
)
def test_bad_metrics_options_are_one_line_and_exit_2(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert says in _one_line_exit_2(argv, capsys)


@pytest.mark.usefixtures("cli_env")
@pytest.mark.parametrize("command", ["telegram", "scheduler"])
def test_a_metrics_port_in_use_is_one_line_and_exit_2(
    command: str,
    busy_port: int,
    capsys: pytest.CaptureFixture[str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHATBOT_DATABASE_URL", database_url)
    line = _one_line_exit_2([command, "--metrics-port", str(busy_port)], capsys)
    assert line.startswith(f"chatbot {command}: error: cannot listen on 127.0.0.1:{busy_port}")


@pytest.mark.slow
async def test_the_scheduler_serves_its_leadership_at_metrics(
    tmp_path: Path, sqlite_template: Path
) -> None:
    database = tmp_path / "chatbot.db"
    database.write_bytes(sqlite_template.read_bytes())
    port = processes.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATBOT_")}
    env.update(
        PYTHONPATH=str(processes.REPO_ROOT),
        CHATBOT_DATABASE_URL=f"sqlite:///{database}",
        CHATBOT_DATA_DIR=str(tmp_path),
        CHATBOT_RETRAIN__LEADER_POLL_SECONDS="0.2",
    )
    log = tmp_path / "scheduler.log"
    process = await processes.start_bot_process(
        ["scheduler", "--metrics-port", str(port)], env, log
    )
    try:
        samples = await processes.unless_it_exits(_leading(port), process, log)
        code = await processes.stop(process)
    finally:
        await processes.kill_hard(process)

    assert code == 0, log.read_text()[-3000:]
    assert samples[("chatbot_leader", (("role", "scheduler"),))] == 1
    assert (
        samples[
            ("chatbot_retrain_last_run_outcome", (("chatbot_retrain_last_run_outcome", "none"),))
        ]
        == 1
    )
    print(f"\nscheduler /metrics: {len(samples)} samples", file=sys.stderr)


async def _leading(port: int, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    samples = parse(await response.text())
                    if samples.get(("chatbot_leader", (("role", "scheduler"),))) == 1:
                        return samples
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "the scheduler never led"
            await asyncio.sleep(0.1)
