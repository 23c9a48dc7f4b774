"""Getting a reply to Telegram: typing indicator, splitting past 4,096 characters, retries.

429 RetryAfter is retried by PTB's `AIORateLimiter` (which also paces outgoing messages). Here we
retry what it does not: 5xx answers and timeouts (`NetworkError`), a few times with a growing
pause. A `BadRequest` or a `Forbidden` (the user blocked the bot) would fail the same way again,
so those are not retried. A timeout may hide a message that did arrive: a rare duplicate is the
price of not losing replies. A reply that still cannot be sent is logged and given up: it is
stored already, and the bot carries on with the next update.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatAction, MessageLimit
from telegram.error import BadRequest, Forbidden, NetworkError, TelegramError

log = logging.getLogger(__name__)
T = TypeVar("T")

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


async def with_retries(
    call: Callable[[], Awaitable[T]], *, retries: int, delay_seconds: float
) -> T:
    """`call()`, again after a 5xx or a timeout, at most `retries` more times."""
    for attempt in range(retries + 1):
        try:
            return await call()
        except BadRequest:
            raise
        except NetworkError as exc:
            if attempt == retries:
                raise
            pause = delay_seconds * 2**attempt
            log.warning("Bot API call failed (%s); retry %d in %.2fs", exc, attempt + 1, pause)
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")


async def send_text(
    bot: Bot,
    chat_id: int,
    text: str,
    *,
    reply_markup: InlineKeyboardMarkup | None = None,
    reply_to: int | None = None,
    retries: int = 2,
    delay_seconds: float = 0.5,
) -> Message | None:
    """Send `text` (split if needed; the markup goes on the last piece); the last message sent,
    or None when Telegram would not take it (logged, never raised)."""
    pieces = split_message(text)
    sent: Message | None = None
    try:
        for index, piece in enumerate(pieces):
            send = functools.partial(
                bot.send_message,
                chat_id,
                piece,
                reply_markup=reply_markup if index == len(pieces) - 1 else None,
                reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True)
                if reply_to is not None and index == 0
                else None,
            )
            sent = await with_retries(send, retries=retries, delay_seconds=delay_seconds)
    except Forbidden as exc:
        log.info("chat %s does not take messages from the bot (%s); reply dropped", chat_id, exc)
        return None
    except TelegramError as exc:
        log.warning("could not send a reply to chat %s: %s; it stays stored", chat_id, exc)
        return None
    return sent


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
