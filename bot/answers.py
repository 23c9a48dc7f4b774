"""The fixed answers a person gets instead of a generated reply, in one place."""

from enum import StrEnum, unique


@unique
class FixedReason(StrEnum):
    """Why the dialogue service answered a message with a fixed text: decided where it chose the
    text and carried on its `Answer`, so nothing reads the reason back from the wording. The
    values are the `reason` labels of the `chatbot_fixed_answers_total` metric."""

    EMPTY = "empty"
    TOO_LONG = "too_long"
    NO_WORDS = "no_words"
    UNKNOWN_WORDS = "unknown_words"
    MODEL_ERROR = "model_error"


EMPTY = "I didn't catch that. Send me a few words and I'll answer."
TOO_LONG = "That's more than I can read at once: please keep it under {limit:,} characters."
TEACH_TOO_LONG = (
    "That's more than I can learn at once: please keep what someone says and what I should "
    "answer under {limit:,} characters each."
)
NO_WORDS = "I can only read words for now. Tell me something in English?"
UNKNOWN_WORDS = "I don't know any of those words yet. Could you say it another way?"
APOLOGY = "Sorry, something went wrong on my side. Please try again in a moment."
SLOW_DOWN = "You're sending messages faster than I can think. Please slow down a little."
NOT_ALLOWED = "Sorry, that command is only for the bot's admins."
NOT_TEXT = "I can only read text messages for now."
