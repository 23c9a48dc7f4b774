"""The one place that decides where the Telegram limits live: in Redis when `CHATBOT_REDIS_URL`
is set (every replica counts against the same limits), else in this process (one replica).

The incoming per-user limit, the outgoing flood limits and the /export cooldown use one Redis
client and one `RedisFailover`, so a Redis outage is logged once, not once per limit. The client
is closed by the flood limiter's `shutdown` (PTB calls it when the bot stops).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from bot.telegram.export_cooldown import ExportCooldown, LocalExportCooldown
from bot.telegram.flood_limits import FloodLimits, LocalFloodLimits
from bot.telegram.rate_limit import SlidingWindowLimiter, UserRateLimiter
from bot.telegram.redis_export_cooldown import RedisExportCooldown
from bot.telegram.redis_failover import RedisFailover
from bot.telegram.redis_flood_limits import RedisFloodLimits
from bot.telegram.redis_rate_limit import RedisSlidingWindowLimiter
from config import Settings

log = logging.getLogger(__name__)

# A limit is checked on every message: a Redis that does not answer within this is taken for
# down (see `redis_failover`) rather than delaying the reply by redis-py's default 5 s.
REDIS_TIMEOUT_SECONDS = 0.5


@dataclass(frozen=True)
class Limits:
    users: UserRateLimiter  # incoming messages per person
    flood: FloodLimits  # outgoing requests: the bot's pace, each group's, Telegram's pauses
    exports: ExportCooldown  # one /export per person per cooldown


def build_limits(settings: Settings) -> Limits:
    telegram = settings.telegram
    users = SlidingWindowLimiter(telegram.rate_limit_messages, telegram.rate_limit_seconds)
    flood = LocalFloodLimits(
        telegram.flood_messages_per_second, telegram.flood_group_messages_per_minute
    )
    exports = LocalExportCooldown(telegram.export_cooldown_seconds)
    if settings.redis_url is None:
        return Limits(users, flood, exports)
    url = settings.redis_url.get_secret_value()
    redis = connect(url)
    prefix = key_prefix(settings)
    failover = RedisFailover(where=without_password(url))
    log.info("Telegram rate limits are shared through Redis at %s", failover.where)
    return Limits(
        RedisSlidingWindowLimiter(
            redis,
            prefix,
            telegram.rate_limit_messages,
            telegram.rate_limit_seconds,
            failover,
            local=users,
        ),
        RedisFloodLimits(
            redis,
            prefix,
            failover,
            telegram.flood_messages_per_second,
            telegram.flood_group_messages_per_minute,
            local=flood,
        ),
        RedisExportCooldown(
            redis, prefix, telegram.export_cooldown_seconds, failover, local=exports
        ),
    )


def connect(url: str) -> Redis:
    """A client that connects on first use; a failed command is retried once at once (a pooled
    connection that went stale when Redis restarted), then reported."""
    return Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 1),
    )


def key_prefix(settings: Settings) -> str:
    """`<CHATBOT_REDIS_KEY_PREFIX>:<bot id>`: two bots on one Redis never share a limit. The
    bot id is the part of the token before the colon (public, unlike the rest)."""
    token = settings.telegram.token
    bot_id = token.get_secret_value().partition(":")[0] if token is not None else ""
    return f"{settings.redis_key_prefix}:{bot_id or 'bot'}"


def without_password(url: str) -> str:
    """The URL for the log: a password in the user part is masked, and the query (redis-py also
    reads `?password=` there) is left out."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname}"
        if parts.port is not None:
            netloc += f":{parts.port}"
    return parts._replace(netloc=netloc, query="", fragment="").geturl()
