"""One getUpdates batch, where an update python-telegram-bot cannot read costs only itself.

`Bot.get_updates` parses the whole batch at once: one update it cannot read (a field of a type
it does not expect) fails the call, and the same batch comes back on the next call, forever:
nothing after it is ever handled (PTB's own `Updater` logged it as CRITICAL in a hot loop, 6,838
tracebacks in 20 s). `read_batch` then asks for the same batch as plain JSON, reads each update
on its own, logs each one it cannot read once (with its update id) and leaves it out, and
returns the offset that confirms the whole batch, so Telegram does not send the skipped ones
again.

`Bot.get_updates` also logs such a failure itself, as CRITICAL with a traceback and the whole
batch (everyone's messages in it): that one record is dropped, since the update is reported
here, once and without anybody's text.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from telegram import Bot, Update
from telegram.error import TelegramError
from telegram.warnings import PTBUserWarning

log = logging.getLogger(__name__)

# The plain-JSON call below is deliberate: PTB's advice (use `Bot.get_updates`) is the call that
# just failed to read the batch.
warnings.filterwarnings("ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning)
PARSE_FAILURE = "Error while parsing updates!"  # how Bot.get_updates' own record begins
BOT_LOGGERS = ("telegram.Bot", "telegram.ext.ExtBot")


class _ReportedHere(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(PARSE_FAILURE))


for _name in BOT_LOGGERS:
    logging.getLogger(_name).addFilter(_ReportedHere())


@dataclass(frozen=True)
class Batch:
    updates: list[Update]  # the ones we can read, in Telegram's order
    next_offset: int | None  # confirms every update fetched; None when there were none


async def read_batch(
    bot: Bot,
    *,
    offset: int | None,
    timeout: int,
    read_timeout: float,
    allowed_updates: Sequence[str],
) -> Batch:
    """`bot.get_updates(...)`; Telegram's errors (`TelegramError`) are raised as they are."""
    try:
        updates = await bot.get_updates(
            offset=offset,
            timeout=timeout,
            read_timeout=read_timeout,
            allowed_updates=allowed_updates,
        )
    except TelegramError:
        raise
    except Exception:  # PTB could not read the batch: read it again, one update at a time
        return await _one_at_a_time(bot, offset, read_timeout, allowed_updates)
    return Batch(list(updates), updates[-1].update_id + 1 if updates else None)


async def _one_at_a_time(
    bot: Bot, offset: int | None, read_timeout: float, allowed_updates: Sequence[str]
) -> Batch:
    # No long poll: the batch that failed is still there.
    raw = await bot.do_api_request(
        "getUpdates",
        api_kwargs={"offset": offset, "timeout": 0, "allowed_updates": list(allowed_updates)},
        read_timeout=read_timeout,
    )
    if not isinstance(raw, list):
        raise TelegramError(f"getUpdates answered {type(raw).__name__}, not a list of updates")
    updates: list[Update] = []
    last_id: int | None = None
    for item in raw:
        update_id = _update_id(item)
        if update_id is not None:
            last_id = update_id if last_id is None else max(last_id, update_id)
        try:
            update = Update.de_json(item, bot)
        except Exception as exc:  # whatever PTB's parser trips on: skip this one only
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            log.error(
                "skipped update %s: python-telegram-bot cannot read it (%s)", update_id, reason
            )
            continue
        updates.append(update)
    if raw and last_id is None:  # nothing to confirm them by: the same batch would come back
        raise TelegramError("getUpdates answered updates without an update_id")
    return Batch(updates, None if last_id is None else last_id + 1)


def _update_id(item: Any) -> int | None:
    value = item.get("update_id") if isinstance(item, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None
