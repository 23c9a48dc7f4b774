"""The console chat: a REPL on a terminal, or one reply per line when input is piped."""

from __future__ import annotations

import getpass
import signal
import sys
from typing import TextIO

from bot.dialogue import DialogueService, Incoming

PLATFORM = "console"
HELP = """Type a message and press Enter. Commands:
  /help     this help
  /reset    start a new conversation (the model forgets the context)
  /history  show the last messages of this chat
  /quit     leave (Ctrl-D or Ctrl-C work too)"""


class ConsoleChat:
    def __init__(
        self,
        service: DialogueService,
        stdin: TextIO = sys.stdin,
        stdout: TextIO = sys.stdout,
        user: str | None = None,
    ) -> None:
        self.service = service
        self.stdin = stdin
        self.stdout = stdout
        self.user = user or _os_user()
        self.interactive = stdin.isatty()
        self._message_number = 0

    async def run(self) -> int:
        if self.interactive:
            # asyncio.run() turns the first Ctrl-C into a task cancellation, which a blocking
            # input() never notices; a plain KeyboardInterrupt ends the prompt at once.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._print("Chatbot console. /help lists the commands, /quit leaves.")
        while True:
            try:
                # Read on this thread: Ctrl-C must interrupt input(), which a worker thread's
                # input() would not see. Nothing else runs on the loop while the user types.
                line = self._read_line()
            except (EOFError, KeyboardInterrupt):
                break
            if line is None:
                break
            if not await self.handle(line):
                break
        if self.interactive:
            self._print("Bye!")
        return 0

    async def handle(self, line: str) -> bool:
        """Answer one line; False when the user asked to leave."""
        command = line.strip().lower()
        if command in ("/quit", "/exit"):
            return False
        if command == "/help":
            self._print(HELP)
        elif command == "/reset":
            await self.service.reset(PLATFORM, self.user)
            self._print("(new conversation: earlier messages no longer count as context)")
        elif command == "/history":
            for turn in await self.service.history(PLATFORM, self.user):
                self._print(f"{'bot' if turn.from_bot else 'you'}: {turn.text}")
        elif command.startswith("/"):
            self._print(f"Unknown command {command.split()[0]}. {HELP.splitlines()[0]}")
        elif line.strip() or self.interactive:
            self._message_number += 1
            answer = await self.service.respond(
                Incoming(PLATFORM, self.user, self.user, line, user_name=self.user, message_id=None)
            )
            self._print(f"bot> {answer.text}" if self.interactive else answer.text)
        return True

    def _read_line(self) -> str | None:
        if self.interactive:
            return input("you> ")
        line = self.stdin.readline()
        return None if line == "" else line.rstrip("\n")

    def _print(self, text: str) -> None:
        print(text, file=self.stdout, flush=True)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "local"
