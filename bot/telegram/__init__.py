"""The Telegram front end: a python-telegram-bot v22 `Application` around the bot's services.

Front ends only parse and format: every use case is a method of the dialogue service
(`bot.dialogue`) or the admin service (`bot.admin_service`); nothing here opens a storage
transaction. One module per job: `application` (builds the Application and registers every
handler), `handlers` (messages and the plain commands), `groups` (is a group message meant for
the bot?), `feedback` (👍/👎 buttons), `forget` (/forget with confirmation), `admin` (/status,
/stats), `retrain_commands` (/retrain, /teach, /schedule, /rollback, /optout, /optin),
`rate_limit` (per-user sliding window), `flood_control` and `flood_limits` (outgoing pace and
Telegram's pauses), `export_cooldown` (one /export per person per cooldown), `shared_limits`
(those limits in this process, or in Redis for several replicas: `redis_rate_limit`,
`redis_flood_limits`, `redis_export_cooldown`, `redis_failover`), `sending` (typing
indicator, splitting, retries), `error_handler` (the one error handler), `webhook` (the webhook
server, which also serves `/metrics`, `/healthz` and `/readyz`), `status` (those endpoints wired to
the bot's state, also on `--metrics-port`), `runner` (start and stop in polling or webhook mode),
`redaction` (no token in any log line), `state` (what the handlers share, kept in
`application.bot_data`), `phrases` and `retrain_phrases` (what the bot says on Telegram only).
"""

from bot.telegram.application import build_application
from bot.telegram.runner import running

__all__ = ["build_application", "running"]
