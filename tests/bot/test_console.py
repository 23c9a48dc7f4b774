"""The console chat as a person and a script use it: a real `chatbot chat` process."""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from bot import command_replies
from bot.console import HELP
from storage import privacy, teaching, training_runs
from storage.conversations import find_user
from storage.database import Database
from tests.support.retraining import PATTERN, PATTERN_REPLY, fast_retrain

CHATBOT = str(Path(sys.executable).parent / "chatbot")


@pytest.fixture
def env(tmp_path: Path, tiny_model_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CHATBOT_DATA_DIR": str(tmp_path / "data"),
        "CHATBOT_MODEL_DIR": str(tiny_model_dir),
        "CHATBOT_DB_AUTO_UPGRADE": "1",
    }


@pytest.fixture
def retrain_env(
    env: dict[str, str], tmp_path: Path, tiny_model_dir: Path, tiny_pairs_file: Path
) -> dict[str, str]:
    """Retraining in seconds, on the console's own copy of the model."""
    shipped = shutil.copytree(tiny_model_dir, tmp_path / "shipped" / "tiny")
    settings = fast_retrain(tiny_pairs_file).model_dump(mode="json", exclude_none=True)
    return {
        **env,
        "CHATBOT_MODEL_DIR": str(shipped),
        **{
            f"CHATBOT_RETRAIN__{name.upper()}": json.dumps(value)
            if isinstance(value, (list, dict))
            else str(value)
            for name, value in settings.items()
        },
    }


def _chat(env: dict[str, str], lines: list[str]) -> list[str]:
    """The output of `chatbot chat` with `lines` piped in."""
    result = subprocess.run(
        [CHATBOT, "chat"],
        input="".join(f"{line}\n" for line in lines),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def _database(env: dict[str, str]) -> Database:
    return Database(f"sqlite:///{Path(env['CHATBOT_DATA_DIR']) / 'chatbot.db'}")


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


def test_an_unknown_command_lists_the_commands(env: dict[str, str]) -> None:
    assert _chat(env, ["/foo bar"]) == f"Unknown command /foo. {HELP}".splitlines()
    assert all(f"  {name}" in HELP for name in ("/teach", "/retrain", "/status", "/stats"))


def test_the_local_operator_has_the_admin_and_privacy_commands(env: dict[str, str]) -> None:
    out = "\n".join(
        _chat(
            env,
            [
                "hello",
                "/teach  what is your name?  =>  Tiny. ",
                "/teach what is your name?",
                "/optout",
                "/rollback",
                "/status",
                "/stats",
                "/retrain",
            ],
        )
    )
    expected = [
        "Hi there!",
        command_replies.TEACH_DONE.format(context="what is your name?", reply="Tiny."),
        command_replies.TEACH_USAGE,
        command_replies.OPTOUT_DONE,
        command_replies.ROLLBACK_NONE.format(
            error="no earlier model version was active: nothing to roll back to"
        ),
        "Model: tiny (checkpoint)\nMetrics: {",
        "Messages: 2 (1 from people, 1 replies)\nUsers: 1\nLast training run: none",
        "Console:\n  users 1, chats 1 (0 groups)\n  messages 1, replies 1,",
        "Console, last 24 h:\n  users 1, chats 1 (0 groups)",
        "Not retraining: only ",
        "Send /retrain force to train on them anyway.",
    ]
    positions = [out.find(text) for text in expected]
    assert -1 not in positions and positions == sorted(positions), out

    db = _database(env)
    try:
        [taught] = db.read(teaching.list_taught_pairs)
        assert (taught.context, taught.reply) == ("what is your name?", "Tiny.")
        assert taught.user_id == db.read(find_user, "console", getpass.getuser())
        assert taught.user_id is not None and db.read(privacy.is_opted_out, taught.user_id)
        assert _chat(env, ["/optin"]) == command_replies.OPTIN_DONE.splitlines()
        assert not db.read(privacy.is_opted_out, taught.user_id)
    finally:
        db.dispose()


def _teach_the_pattern(term: Terminal) -> None:
    for question in PATTERN:
        term.type(f"/teach {question} => {PATTERN_REPLY}\n")
        term.expect(command_replies.TEACH_DONE.format(context=question, reply=PATTERN_REPLY))


def test_retraining_from_the_console_reports_its_result_at_the_prompt(
    retrain_env: dict[str, str],
) -> None:
    term = Terminal(retrain_env)
    term.expect("you> ")
    _teach_the_pattern(term)
    term.type("/retrain\n")
    term.expect(f"Retraining run 1 started on {len(PATTERN)} new pairs")
    # Nobody presses Enter: the report appears when the run ends, and a fresh prompt below it.
    term.expect("Retraining run 1: ", timeout=120)
    report = term.screen[term.screen.rindex("Retraining run 1: ") :]
    assert report.startswith(("Retraining run 1: promoted", "Retraining run 1: candidate")), report
    term.expect("\r\nyou> ")
    term.type("/status\n")
    term.expect("Last training run: run 1 ")
    term.type("/quit\n")
    term.expect("Bye!")
    assert term.exit_code() == 0


def test_leaving_waits_for_a_retraining_run_and_ctrl_c_cancels_it(
    retrain_env: dict[str, str],
) -> None:
    term = Terminal(retrain_env)
    term.expect("you> ")
    _teach_the_pattern(term)
    term.type("/retrain\n")
    term.expect("Retraining run 1 started")
    term.type("/quit\n")
    term.expect("Waiting for retraining run 1 to end (Ctrl-C cancels it)")
    os.write(term.master, b"\x03")  # the console waits in join(), not read(): no pause to wait for
    term.expect("Cancelling retraining run 1")
    term.expect("Retraining run 1 failed: cancelled")
    term.expect("Bye!")
    assert term.exit_code() == 0

    db = _database(retrain_env)
    try:
        [run] = db.read(training_runs.list_runs)
    finally:
        db.dispose()
    assert run.status == "failed" and run.error is not None and "cancelled" in run.error


def test_forget_asks_first_then_deletes_and_says_what_telegram_says(env: dict[str, str]) -> None:
    asked = _chat(env, ["hello", "/forget"])
    assert asked[0] == "Hi there!"
    assert "\n".join(asked[1:]) == command_replies.forget_question(
        "Type /forget yes to delete it all."
    )
    db = _database(env)
    try:
        assert db.read(find_user, "console", getpass.getuser()) is not None  # nothing went yet

        # One session (each costs a process start): delete, an empty history, nothing left.
        done = _chat(env, ["/forget yes", "/history", "/forget yes"])

        assert "\n".join(done) == (
            "Done. Deleted 1 message, 1 reply of mine, 0 ratings and your user record.\n\n"
            + command_replies.FORGET_MODELS
            + "\n"
            + command_replies.FORGET_NOTHING
        )
        assert db.read(find_user, "console", getpass.getuser()) is None
    finally:
        db.dispose()
