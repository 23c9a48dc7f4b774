"""The console chat: a REPL on a terminal, or one reply per line when input is piped.

The person at the console runs the bot on their own machine, so they are its admin: besides
chatting they get the admin commands Telegram gives `CHATBOT_ADMIN_IDS`. Like the Telegram front
end this module only parses and formats; the use cases are the dialogue and admin services'.
"""

from __future__ import annotations

import asyncio
import getpass
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from bot import command_replies
from bot.admin_service import AdminService, parse_teaching
from bot.conversation_export import ConversationExporter, delete_saved_histories
from bot.dialogue import ChatRef, DialogueService, Incoming, UserRef
from bot.retraining.job import PreparedRun
from bot.retraining.report import outcome_text

PLATFORM = "console"
HELP = """Type a message and press Enter. Commands:
  /help              this help
  /reset             start a new conversation (the model forgets the context)
  /history           show the last messages of this chat
  /optout            keep your messages out of retraining (/optin undoes it)
  /export [csv]      save your messages and the bot's replies to a file (JSON Lines or CSV)
  /forget            delete everything stored about you (asks first: /forget yes)
  /teach A => B      teach a reply: when someone says A, answer B (from the next retraining)
  /retrain [force]   retrain on the new chat logs now
  /rollback          go back to the previous model version
  /status            model version, last training run, uptime, counts
  /stats             usage numbers
  /quit              leave (Ctrl-D or Ctrl-C work too)"""
PROMPT = "you> "
FORGET_CONFIRM = "Type /forget yes to delete it all."
WAITING_FOR_RUN = "Waiting for retraining run {run} to end (Ctrl-C cancels it)…"
CANCELLING_RUN = "Cancelling retraining run {run}…"

Command = Callable[[str], Awaitable[None]]


class ConsoleChat:
    def __init__(
        self,
        service: DialogueService,
        admin: AdminService,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        user: str | None = None,
        exports_dir: Path = Path("exports"),
    ) -> None:
        self.service = service
        self.admin = admin
        self.stdin = stdin
        self.stdout = stdout
        self.user = user or _os_user()
        self.interactive = stdin.isatty()
        self.exports_dir = exports_dir  # where /export writes
        self._retraining: threading.Thread | None = None
        self._retraining_done = threading.Event()
        self._leaving = False
        self._commands: dict[str, Command] = {
            "/help": self._help,
            "/reset": self._reset,
            "/history": self._history,
            "/optout": self._optout,
            "/optin": self._optin,
            "/forget": self._forget,
            "/export": self._export,
            "/teach": self._teach,
            "/retrain": self._retrain,
            "/rollback": self._rollback,
            "/status": self._status,
            "/stats": self._stats,
        }

    async def run(self) -> int:
        if self.interactive:
            # asyncio.run() turns the first Ctrl-C into a task cancellation, which a blocking
            # input() never notices; a plain KeyboardInterrupt ends the prompt at once.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._print("Chatbot console. /help lists the commands, /quit leaves.")
        try:
            while True:
                try:
                    # Read on this thread: Ctrl-C must interrupt input(), which a worker thread's
                    # input() would not see. Nothing else runs on the loop while the user types.
                    line = self._read_line()
                except (EOFError, KeyboardInterrupt):
                    break
                if line is None or not await self.handle(line):
                    break
        finally:  # also when Ctrl-C ends a reply being generated
            self._wait_for_retraining()
        if self.interactive:
            self._print("Bye!")
        return 0

    async def handle(self, line: str) -> bool:
        """Answer one line; False when the user asked to leave."""
        stripped = line.strip()
        if stripped.startswith("/"):
            name, _, argument = stripped.partition(" ")
            name = name.lower()
            if name in ("/quit", "/exit"):
                return False
            command = self._commands.get(name)
            if command is None:
                self._print(f"Unknown command {name}. {HELP}")
            else:
                await command(argument.strip())
        elif stripped or self.interactive:
            answer = await self.service.respond(
                Incoming(PLATFORM, self.user, self.user, line, user_name=self.user, message_id=None)
            )
            self._print(f"bot> {answer.text}" if self.interactive else answer.text)
        return True

    # ---- commands -------------------------------------------------------------------------------

    async def _help(self, argument: str) -> None:
        self._print(HELP)

    async def _reset(self, argument: str) -> None:
        await self.service.reset(PLATFORM, self.user)
        self._print("(new conversation: earlier messages no longer count as context)")

    async def _history(self, argument: str) -> None:
        for turn in await self.service.history(PLATFORM, self.user):
            self._print(f"{'bot' if turn.from_bot else 'you'}: {turn.text}")

    async def _optout(self, argument: str) -> None:
        await self.service.set_opted_out(self._person, True)
        self._print(command_replies.opt_out_text(True))

    async def _optin(self, argument: str) -> None:
        await self.service.set_opted_out(self._person, False)
        self._print(command_replies.opt_out_text(False))

    async def _forget(self, argument: str) -> None:
        """Asks first, as on Telegram: only `/forget yes` deletes."""
        if argument.lower() != "yes":
            self._print(command_replies.forget_question(FORGET_CONFIRM))
            return
        forgotten = await self.service.forget(PLATFORM, self.user)
        await asyncio.to_thread(delete_saved_histories, PLATFORM, self.user, self.exports_dir)
        self._print(command_replies.forgotten_text(forgotten))

    async def _export(self, argument: str) -> None:
        fmt = command_replies.export_format(argument)
        if fmt is None:
            self._print("Usage: /export (JSON Lines) or /export csv")
            return
        saved = await ConversationExporter(self.service.db).save_user_history(
            PLATFORM, self.user, fmt, self.exports_dir
        )
        if saved is None:
            self._print(command_replies.EXPORT_NOTHING)
        else:
            path, messages = saved
            self._print(f"Saved {messages} messages to {path}")

    async def _teach(self, argument: str) -> None:
        taught = parse_teaching(argument)
        if taught is None:
            self._print(command_replies.TEACH_USAGE)
            return
        result = await self.admin.teach(self._chat, self._person, taught)
        self._print(command_replies.teach_text(result))

    async def _rollback(self, argument: str) -> None:
        self._print(command_replies.rollback_text(await self.admin.rollback()))

    async def _status(self, argument: str) -> None:
        self._print(command_replies.status_text(await self.admin.status()))

    async def _stats(self, argument: str) -> None:
        self._print(command_replies.stats_text(await self.admin.stats(PLATFORM)))

    async def _retrain(self, argument: str) -> None:
        start = await self.admin.start_retrain(PLATFORM, force=argument.lower() == "force")
        self._print(command_replies.retrain_start_text(start))
        if start.prepared is not None:
            # A thread, not a task: the loop sleeps in input() while the person types, and the
            # result should appear when the run ends, not at their next Enter.
            self._retraining_done.clear()
            self._retraining = threading.Thread(
                target=self._complete_retrain,
                args=(start.prepared,),
                name=f"retrain-{start.prepared.run.id}",
            )
            self._retraining.start()

    def _complete_retrain(self, prepared: PreparedRun) -> None:
        try:
            text = outcome_text(self.admin.complete_retrain(prepared))
            if self.interactive and not self._leaving:
                # The person is at the prompt: the report goes above a fresh one.
                print(f"\n{text}", file=self.stdout)
                print(PROMPT, end="", file=self.stdout, flush=True)
            else:
                self._print(text)
        finally:
            self._retraining_done.set()

    def _wait_for_retraining(self) -> None:
        """Leaving waits for a run this console started (a script piping `/retrain` wants its
        result); Ctrl-C cancels it instead, and the run is recorded as failed."""
        thread = self._retraining
        if thread is None or not thread.is_alive():
            return
        run = thread.name.removeprefix("retrain-")
        self._leaving = True
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            self._print(WAITING_FOR_RUN.format(run=run))
            # An Event, not join(): a Ctrl-C inside Thread.join() marks the thread finished
            # while it still runs, and the process would exit from under the run.
            try:
                self._retraining_done.wait()
            except KeyboardInterrupt:
                self._print(CANCELLING_RUN.format(run=run))
                self.admin.cancel_retraining()
                self._retraining_done.wait()
        finally:
            signal.signal(signal.SIGINT, previous)
        thread.join()

    # ---- input and output -----------------------------------------------------------------------

    @property
    def _person(self) -> UserRef:
        return UserRef(PLATFORM, self.user, self.user)

    @property
    def _chat(self) -> ChatRef:
        return ChatRef(PLATFORM, self.user)

    def _read_line(self) -> str | None:
        if self.interactive:
            return input(PROMPT)
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    def _print(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "local"
