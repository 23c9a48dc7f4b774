"""Getting a text onto Telegram's screen: splitting past 4,096 characters, the typing indicator.

Messages themselves go through the outbox (`bot.telegram.delivery` sends them, and retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from telegram import Bot
from telegram.constants import ChatAction, MessageLimit
from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot.telegram.flood_control import NO_WAITING

log = logging.getLogger(__name__)

TYPING_REFRESH_SECONDS = 4.5  # Telegram shows "typing…" for about 5 s per chat action


def utf16_length(text: str) -> int:
    """Telegram counts message length in UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def split_message(text: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """Pieces of at most `limit` UTF-16 units, cut at a line break or space where there is one."""
    pieces: list[str] = []
    rest = text
    while utf16_length(rest) > limit:
        fits = _longest_prefix(rest, limit)
        window = rest[:fits]
        cut = window.rfind("\n")
        if cut < fits // 2:
            cut = window.rfind(" ")
        if cut < fits // 2:
            cut = fits  # one long word: cut it
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip()
        if piece:
            pieces.append(piece)
    if rest.strip() or not pieces:
        pieces.append(rest)
    return pieces


def _longest_prefix(text: str, limit: int) -> int:
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


@contextlib.asynccontextmanager
async def typing(bot: Bot, chat_id: int, after_seconds: float = 0.0) -> AsyncIterator[None]:
    """Show "typing…" in the chat while the block runs, refreshed every few seconds.

    Only once the block has run `after_seconds`: a faster reply needs no indicator (the client
    would barely show it), and every chat action counts against Telegram's flood limits like a
    message, so one per reply would halve the replies the bot can send per second. When the block
    ends, a chat action already on its way is let finish rather than cancelled: it then arrives
    before the reply (not after it, which would show "typing…" under the answer) and its HTTP
    connection stays usable.
    """
    done = asyncio.Event()
    task = asyncio.create_task(_keep_typing(bot, chat_id, after_seconds, done))
    try:
        yield
    finally:
        done.set()
        await task


async def _keep_typing(bot: Bot, chat_id: int, after_seconds: float, done: asyncio.Event) -> None:
    if await _ends_within(done, after_seconds):
        return
    while True:
        try:
            if isinstance(bot, ExtBot) and bot.rate_limiter is not None:
                # Never waiting for a chat that flood control holds back: skipped instead.
                await bot.send_chat_action(chat_id, ChatAction.TYPING, rate_limit_args=NO_WAITING)
            else:
                await bot.send_chat_action(chat_id, ChatAction.TYPING)
        except TelegramError as exc:  # cosmetic: never worth failing or retrying a reply for
            log.debug("typing indicator for chat %s failed: %s", chat_id, exc)
            return
        if await _ends_within(done, TYPING_REFRESH_SECONDS):
            return


async def _ends_within(done: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(done.wait(), seconds)
    except TimeoutError:
        return False
    return True
