"""What the bot says on Telegram besides generated replies (the shared fixed answers are in
`bot.answers`, the answers to commands every front end has in `bot.command_replies`), in one
place."""

from bot import command_replies

START = (
    "Hi {name}! I'm a small chatbot: a neural network (a GRU sequence-to-sequence model with "
    "attention) trained on everyday conversations. Send me a message and I'll answer.\n\n"
    "Rate my replies with 👍 or 👎: that is how I learn which answers work.\n"
    "In a group, mention me (@{bot}) or reply to one of my messages to talk to me.\n\n"
    "Privacy: I store the messages you send me and my replies, to keep the conversation going and "
    "to retrain the model (emails, links and numbers are masked in training data). "
    "/reset starts a fresh conversation; /forget deletes everything stored about you.\n"
    "/help lists the commands."
)

HELP = (
    "Just write to me and I'll answer. Commands:\n"
    "/start - who I am and what I keep about you\n"
    "/help - this list\n"
    "/reset - start a new conversation (I stop using the earlier messages as context)\n"
    "/forget - delete everything stored about you (asks first)\n"
    "/export [csv] - your messages and my replies to them, as a file (JSON Lines or CSV)\n"
    "/optout - keep your messages out of my training (/optin undoes it)"
)
ADMIN_HELP = (
    "\n\nAdmin commands:\n"
    "/status - model version, last training run, uptime, counts\n"
    "/stats - usage numbers\n"
    "/retrain [force] - retrain on the new chat logs now\n"
    "/teach <context> => <reply> - add a training pair\n"
    "/schedule [<cron>|off] - show or set the retraining schedule\n"
    "/rollback - go back to the previous model version"
)

RESET = "Okay, fresh start: I won't use our earlier messages as context any more."
UNKNOWN_COMMAND = "I don't know that command. /help lists the ones I do."

# /forget's question and answer are the console's too (`bot.command_replies`).
FORGET_ASK = command_replies.forget_question("Delete it all?")
FORGET_YES = "Yes, delete everything"
FORGET_NO = "No, keep it"
FORGET_NOTHING = command_replies.FORGET_NOTHING
FORGET_CANCELLED = "Okay, nothing was deleted."
NOT_YOURS = "Only the person who asked can answer this."

FEEDBACK_THANKS = {1: "Thanks! Glad that helped 👍", -1: "Thanks, noted: that reply missed 👎"}
FEEDBACK_SAME = "You already rated this reply."
FEEDBACK_GONE = "That reply is no longer stored."
