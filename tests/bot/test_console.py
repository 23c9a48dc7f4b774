"""The console chat as a person and a script use it: a real `chatbot chat` process."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

CHATBOT = str(Path(sys.executable).parent / "chatbot")


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CHATBOT_DATA_DIR": str(tmp_path / "data"),
        "CHATBOT_MODEL_DIR": str(tiny_model_dir),
        "CHATBOT_DB_AUTO_UPGRADE": "1",
    }


def test_piped_input_prints_one_reply_per_line(env: dict[str, str]) -> None:
    result = subprocess.run(
        [CHATBOT, "chat"],
        input="hello\nhow are you?\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["Hi there!", "I am fine, thanks."]


def test_piped_history_shows_what_was_stored(env: dict[str, str]) -> None:
    subprocess.run(
        [CHATBOT, "chat"],
        input="hello\n",
        text=True,
        env=env,
        timeout=120,
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [CHATBOT, "chat"], input="/history\n", capture_output=True, text=True, env=env, timeout=120
    )
    assert result.stdout.splitlines() == ["you: hello", "bot: Hi there!"]


def test_an_out_of_date_database_is_refused_with_the_fix(env: dict[str, str]) -> None:
    env = {**env, "CHATBOT_DB_AUTO_UPGRADE": "0"}
    result = subprocess.run(
        [CHATBOT, "chat"], input="hello\n", capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 2
    assert "chatbot db upgrade" in result.stderr and "Traceback" not in result.stderr


class Terminal:
    """`chatbot chat` on a pseudo-terminal, typed at like a person would."""

    def __init__(self, env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [CHATBOT, "chat"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            # Own session with the pty as controlling terminal, so ^C becomes SIGINT as in a shell.
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.screen = ""

    def expect(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # the child closed the terminal
                    break
        assert text in self.screen, self.screen

    def type(self, keys: str) -> None:
        self._wait_until_reading()
        os.write(self.master, keys.encode())

    def _wait_until_reading(self, timeout: float = 10.0) -> None:
        """Wait until the program blocks in read() on its terminal, as a person's pause would:
        a ^C that lands between the prompt and the read is flagged but cannot interrupt it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(f"/proc/{self.proc.pid}/syscall") as f:
                if f.read().split(" ", 1)[0] == "0":  # x86-64 syscall 0 is read
                    return
            time.sleep(0.01)

    def exit_code(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            os.close(self.master)


def test_interactive_session_with_reset_and_quit(env: dict[str, str]) -> None:
    term = Terminal(env)
    term.expect("you> ")
    term.type("hello\n")
    term.expect("bot> Hi there!")
    term.type("/reset\n")
    term.expect("new conversation")
    term.type("/help\n")
    term.expect("/history")
    term.type("/quit\n")
    term.expect("Bye!")
    assert term.exit_code() == 0


@pytest.mark.parametrize("key", ["\x04", "\x03"], ids=["ctrl-d", "ctrl-c"])
def test_ctrl_d_and_ctrl_c_exit_cleanly(env: dict[str, str], key: str) -> None:
    term = Terminal(env)
    term.expect("you> ")
    term.type(key)
    term.expect("Bye!")
    assert term.exit_code() == 0
