"""Whether a message is meant for the bot, and which chat kind our storage records.

In a private chat everything is. In a group the bot answers only when it is @mentioned, when a
message replies to one of its own, or for commands written `/cmd@botname` (a bare `/cmd` may be
meant for another bot in the group). Everything else there is people talking to each other: it is
stored as dialogue, not answered.
"""

from __future__ import annotations

from telegram import Bot, Chat, Message, MessageEntity
from telegram.ext import filters

# Channel posts never reach the dialogue service; these are the chats it knows.
GROUP_TYPES = frozenset({Chat.GROUP, Chat.SUPERGROUP})


def chat_kind(chat: Chat) -> str:
    """Our storage's kind: "private" or "group" (groups and supergroups alike)."""
    return "group" if chat.type in GROUP_TYPES else "private"


def is_group(chat: Chat) -> bool:
    return chat.type in GROUP_TYPES


def names_bot(entity: MessageEntity, text: str, bot: Bot) -> bool:
    """Is this entity `@botname`, or a text mention linking to the bot?"""
    if entity.type == MessageEntity.MENTION:
        return bool(bot.username) and text.lower() == f"@{bot.username}".lower()
    if entity.type == MessageEntity.TEXT_MENTION:
        return entity.user is not None and entity.user.id == bot.id
    return False


def mentions_bot(message: Message, bot: Bot) -> bool:
    """`@botname` or a text mention of the bot, in the text or a caption."""
    return any(
        names_bot(entity, text, bot)
        for entities in (message.parse_entities(), message.parse_caption_entities())
        for entity, text in entities.items()
    )


def replies_to_bot(message: Message, bot: Bot) -> bool:
    replied = message.reply_to_message
    return replied is not None and replied.from_user is not None and replied.from_user.id == bot.id


def is_addressed(message: Message, bot: Bot) -> bool:
    """Is this message for the bot? Always in private chats; in groups see the module docstring."""
    if not is_group(message.chat):
        return True
    return mentions_bot(message, bot) or replies_to_bot(message, bot)


def without_mention(message: Message, bot: Bot) -> str:
    """The message's text with the mentions of the bot cut out: the model was not trained on
    handles. Entities count UTF-16 units, so the cutting happens in UTF-16."""
    units = (message.text or "").encode("utf-16-le")
    for entity, text in sorted(
        message.parse_entities().items(), key=lambda pair: pair[0].offset, reverse=True
    ):
        if names_bot(entity, text, bot):
            start, end = entity.offset * 2, (entity.offset + entity.length) * 2
            units = units[:start] + " ".encode("utf-16-le") + units[end:]
    return units.decode("utf-16-le").strip().lstrip(",:;").strip()


class _CommandForThisBot(filters.MessageFilter):
    """A command the bot should take: any in a private chat, only `/cmd@botname` in a group.

    PTB's CommandHandler already skips `/cmd@otherbot`; this adds the group rule for bare `/cmd`.
    """

    def filter(self, message: Message) -> bool:
        if not is_group(message.chat):
            return True
        username = message.get_bot().username or ""
        first = (message.text or "").split(maxsplit=1)[0] if message.text else ""
        _, _, addressee = first.partition("@")
        return bool(username) and addressee.lower() == username.lower()


COMMAND_FOR_THIS_BOT = _CommandForThisBot(name="command_for_this_bot")
