"""/export: a person's own history as a file (sendDocument), JSON Lines, or CSV with `/export csv`.

The file holds what is stored of the person: their messages in every chat with the bot (the
private chat and groups) and the bot's replies to them, which is what /forget would delete.
Other people's messages in a shared group are theirs, not in it. It is sent only in the private
chat: in a group everyone would see it, so there the bot says where to ask. Someone with
nothing stored (never wrote, or forgotten) gets a sentence, not an empty file.

One export per person per `CHATBOT_TELEGRAM__EXPORT_COOLDOWN_SECONDS` (`export_cooldown`), shared
by the replicas through Redis when it is configured (`shared_limits`). The document goes straight
to Telegram, not through the outbox (which holds texts); a redelivered /export is dropped like
every command, and one handled again (after a database outage, or by another replica after a
crash) is not refused by the cooldown it started itself: the cooldown knows it by its update id.
"""

from __future__ import annotations

from telegram import Chat, Update
from telegram.ext import ContextTypes

from bot import command_replies
from bot.conversation_export import ConversationExporter, HistoryTooLarge
from bot.export_formats import ExportFormat
from bot.telegram.export_cooldown import minutes
from bot.telegram.outgoing import reply
from bot.telegram.state import PLATFORM, bot_state

USAGE = "Send /export for your history as JSON Lines, or /export csv for a spreadsheet."
PRIVATE_ONLY = "I send your history only in our private chat: write /export to me there."
WAIT = "You exported your history a moment ago. You can ask again in {minutes} min."
TOO_LARGE = (
    "Your history is too large to send here ({megabytes:.0f} MB; Telegram takes up to 50 MB). "
    "The bot's operator can export it for you: chatbot export --user {user_id}."
)
CAPTION = {
    ExportFormat.JSONL: (
        "Everything stored from your conversations with me: {messages} messages, one JSON "
        "object per line. /forget deletes it all."
    ),
    ExportFormat.CSV: (
        "Everything stored from your conversations with me: {messages} messages as CSV "
        "(UTF-8, a header line first). /forget deletes it all."
    ),
}


async def export(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message, user = update.effective_message, update.effective_user
    if message is None or user is None:
        return
    if message.chat.type != Chat.PRIVATE:
        await reply(update, context, PRIVATE_ONLY)
        return
    fmt = command_replies.export_format(" ".join(context.args or []))
    if fmt is None:
        await reply(update, context, USAGE)
        return
    state = bot_state(context)
    wait = await state.exports.try_start(user.id, event=str(update.update_id))
    if wait > 0:
        await reply(update, context, WAIT.format(minutes=minutes(wait)))
        return
    history = await ConversationExporter(state.app.db).user_history(PLATFORM, user.id, fmt)
    if history is None:
        await reply(update, context, command_replies.EXPORT_NOTHING)
    elif isinstance(history, HistoryTooLarge):
        megabytes = history.size / 1024 / 1024
        await reply(update, context, TOO_LARGE.format(megabytes=megabytes, user_id=user.id))
    else:
        await context.bot.send_document(
            message.chat.id,
            history.content,
            filename=history.filename,
            caption=CAPTION[fmt].format(messages=history.messages),
        )
