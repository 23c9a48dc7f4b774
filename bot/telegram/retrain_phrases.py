"""What the bot says about retraining, teaching, schedules and opting out, in one place."""

RETRAIN_STARTED = (
    "Retraining run {run} started on {pairs} new pairs ({heldout} held out for the gate), "
    "fine-tuning {parent}. I keep answering meanwhile and will report the result here."
)
RETRAIN_BUSY = "Not retraining: {error}."
RETRAIN_TOO_FEW = "Not retraining: {error}. Send /retrain force to train on them anyway."
RETRAIN_CANNOT = "Retraining could not start: {error}"

TEACH_USAGE = (
    "Teach me a reply like this:\n/teach <what someone says> => <what I should answer>\n"
    "e.g. /teach what is your favourite colour? => blue like the sky."
)
TEACH_DONE = "Noted: “{context}” → “{reply}”. I will learn it at the next retraining."

SCHEDULE_NONE = (
    "No retraining schedule. Set one with /schedule <cron>, e.g. /schedule 0 3 * * * "
    "(every day at 03:00 {timezone})."
)
SCHEDULE_LIST = "Retraining schedule ({timezone}):\n{schedules}\n/schedule off removes it."
SCHEDULE_SET = "Retraining scheduled: {cron} ({timezone}); next run {next_run}."
SCHEDULE_OFF = "Retraining schedule removed."
SCHEDULE_OFF_NONE = "There was no retraining schedule."
SCHEDULE_BAD = "{error}\nExample: /schedule 0 3 * * * (minute hour day month weekday)."

ROLLBACK_DONE = "Rolled back: now answering with model version {version} (within a few seconds)."
ROLLBACK_NONE = "Nothing to roll back to: {error}."

OPTOUT_DONE = (
    "Okay: from now on none of your messages will be used to train me. They are still kept for "
    "our conversation (/forget deletes them). /optin undoes this."
)
OPTIN_DONE = "Thanks! Your messages may help train me again (masked: no e-mails, links, numbers)."
