"""Bot API JSON for the updates a test sends: users, chats, messages of every kind, button presses.

Plain dicts in the shape Telegram sends them (https://core.telegram.org/bots/api#update), with the
entities Telegram would add: `bot_command` for a leading `/cmd`, `mention` for each `@name`.
Entity offsets and lengths are in UTF-16 code units, as Telegram counts them.
"""

from __future__ import annotations

import re
import time
from typing import Any

JSON = dict[str, Any]

_COMMAND = re.compile(r"^/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?")
_MENTION = re.compile(r"@[A-Za-z0-9_]{3,}")


def user(user_id: int, first_name: str = "Ann", username: str | None = None) -> JSON:
    found: JSON = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username:
        found["username"] = username
    return found


def private_chat(of: JSON) -> JSON:
    return {"id": of["id"], "type": "private", "first_name": of["first_name"]}


def group_chat(chat_id: int, title: str = "Friends", kind: str = "supergroup") -> JSON:
    assert chat_id < 0, "group and channel ids are negative"
    return {"id": chat_id, "type": kind, "title": title}


def channel(chat_id: int, title: str = "News") -> JSON:
    return group_chat(chat_id, title, "channel")


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def entities_of(text: str) -> list[JSON]:
    """The entities Telegram's servers would attach to `text`."""
    found: list[JSON] = []
    command = _COMMAND.match(text)
    if command:
        found.append({"type": "bot_command", "offset": 0, "length": _utf16(command.group())})
    for mention in _MENTION.finditer(text):
        if command and mention.start() < command.end():
            continue
        found.append(
            {
                "type": "mention",
                "offset": _utf16(text[: mention.start()]),
                "length": _utf16(mention.group()),
            }
        )
    return found


def message(
    message_id: int,
    chat: JSON,
    sender: JSON | None,
    *,
    text: str | None = None,
    reply_to: JSON | None = None,
    **content: Any,
) -> JSON:
    """A message; `content` is any other field (`sticker=...`, `photo=[...]`, `edit_date=...`)."""
    built: JSON = {"message_id": message_id, "date": int(time.time()), "chat": chat}
    if sender is not None:
        built["from"] = sender
    if text is not None:
        built["text"] = text
        entities = entities_of(text)
        if entities:
            built["entities"] = entities
    if reply_to is not None:
        built["reply_to_message"] = reply_to
    built.update(content)
    return built


def _file(kind: str) -> JSON:
    return {"file_id": f"{kind}-file", "file_unique_id": f"{kind}-unique"}


# Message contents that are not text, as keyword arguments for `message(...)`.
NOT_TEXT: dict[str, JSON] = {
    "sticker": {
        "sticker": {
            **_file("sticker"),
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        }
    },
    "photo": {"photo": [{**_file("photo"), "width": 90, "height": 60}]},
    "voice": {"voice": {**_file("voice"), "duration": 2}},
    "document": {"document": {**_file("document"), "file_name": "notes.pdf"}},
    "location": {"location": {"latitude": 52.52, "longitude": 13.405}},
}


def callback_query(query_id: str, sender: JSON, on_message: JSON, data: str) -> JSON:
    return {
        "id": query_id,
        "from": sender,
        "chat_instance": f"instance-{on_message['chat']['id']}",
        "message": on_message,
        "data": data,
    }
