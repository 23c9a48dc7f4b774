"""What the bot says on Telegram about retraining schedules (/schedule is Telegram's alone; the
replies every front end shares are in `bot.command_replies`)."""

SCHEDULE_NONE = (
    "No retraining schedule. Set one with /schedule <cron>, e.g. /schedule 0 3 * * * "
    "(every day at 03:00 {timezone})."
)
SCHEDULE_LIST = "Retraining schedule ({timezone}):\n{schedules}\n/schedule off removes it."
SCHEDULE_SET = "Retraining scheduled: {cron} ({timezone}); next run {next_run}."
SCHEDULE_OFF = "Retraining schedule removed."
SCHEDULE_OFF_NONE = "There was no retraining schedule."
SCHEDULE_BAD = "{error}\nExample: /schedule 0 3 * * * (minute hour day month weekday)."
