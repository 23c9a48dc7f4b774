"""What the bot answers to /status, /stats, /teach, /rollback, /retrain, /optout, /optin and
/forget, on every front end: the fixed phrases, and the texts built from the services' typed
results.

One place, so the console and Telegram say the same thing about the same result.
"""

from __future__ import annotations

import json
from typing import Any

from bot.admin_service import (
    RetrainRefusal,
    RetrainStart,
    RollbackResult,
    StatsReport,
    StatusReport,
    TeachResult,
)
from bot.export_formats import ExportFormat
from bot.retraining.report import run_text
from storage.privacy import ForgetResult
from storage.stats import Counts

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

ROLLBACK_DONE = "Rolled back: now answering with model version {version} (within a few seconds)."
ROLLBACK_NONE = "Nothing to roll back to: {error}."

OPTOUT_DONE = (
    "Okay: from now on none of your messages will be used to train me. They are still kept for "
    "our conversation (/forget deletes them). /optin undoes this."
)
OPTIN_DONE = "Thanks! Your messages may help train me again (masked: no e-mails, links, numbers)."

# True to bot.retraining: promoting a version never deletes the earlier ones (rollback needs
# them), each retraining fine-tunes the active model, and a word joins the vocabulary only when
# `retrain.vocab_min_users` people wrote it (collect.allowed_new_words).
FORGET_MODELS = (
    "Models already trained on your messages are not changed: I keep earlier versions (an admin "
    "can go back to one) and each retraining starts from the current model, so what they learned "
    "from you may remain in them. A retraining adds a word to my vocabulary only when several "
    "people used it, so no word that only you wrote gets in."
)
FORGET_NOTHING = "There was nothing stored about you."

EXPORT_NOTHING = "There is nothing stored about you, so there is nothing to export."


def export_format(argument: str) -> ExportFormat | None:
    """`/export`'s argument: nothing (JSON Lines) or a format's name; None for anything else."""
    words = argument.split()
    if not words:
        return ExportFormat.JSONL
    if len(words) == 1 and words[0].lower() in (f.value for f in ExportFormat):
        return ExportFormat(words[0].lower())
    return None


PLATFORM_TITLES = {"telegram": "Telegram", "console": "Console"}


def forget_question(how_to_confirm: str) -> str:
    """What /forget deletes and what it cannot undo, then how to confirm on this front end."""
    return (
        "This deletes everything I have stored about you: your messages, my replies to them, "
        "your ratings, our private chat and your user record. It cannot be undone.\n\n"
        f"{FORGET_MODELS}\n\n{how_to_confirm}"
    )


def forgotten_text(result: ForgetResult | None) -> str:
    """What a /forget deleted (None: nothing was stored), and what it leaves in models."""
    if result is None:
        return FORGET_NOTHING
    counts = [
        _plural(result.messages, "message"),
        _plural(result.bot_replies + result.other_chat_messages, "reply", "replies") + " of mine",
        _plural(result.feedback, "rating"),
    ]
    if result.taught_pairs:
        counts.append(_plural(result.taught_pairs, "taught reply", "taught replies"))
    return f"Done. Deleted {', '.join(counts)} and your user record.\n\n{FORGET_MODELS}"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def status_text(report: StatusReport) -> str:
    totals = report.totals
    return "\n".join(
        [
            f"Model: {report.model_version} ({report.metrics_source})",
            f"Metrics: {_metrics(report.metrics)}",
            f"Uptime: {_duration(report.uptime_seconds)}",
            f"Messages: {totals.messages:,} ({totals.user_messages:,} from people, "
            f"{totals.bot_replies:,} replies)",
            f"Users: {totals.users:,}",
            f"Last training run: {run_text(report.last_run)}",
        ]
    )


def stats_text(report: StatsReport) -> str:
    title = PLATFORM_TITLES.get(report.platform, report.platform)
    run = report.last_run
    last_run = f"{run.status}, started {run.started_at:%Y-%m-%d %H:%M} UTC" if run else "none"
    return "\n".join(
        [
            _block("All platforms", report.total),
            _block(title, report.on_platform),
            _block(f"{title}, last 24 h", report.on_platform_last_day),
            f"Last training run: {last_run}",
        ]
    )


def teach_text(result: TeachResult) -> str:
    if result.refusal is not None:
        return result.refusal
    return TEACH_DONE.format(context=result.teaching.context, reply=result.teaching.reply)


def rollback_text(result: RollbackResult) -> str:
    if result.version is None:
        return ROLLBACK_NONE.format(error=result.refusal)
    return ROLLBACK_DONE.format(version=result.version)


def retrain_start_text(start: RetrainStart) -> str:
    if start.prepared is None:
        refused = {
            RetrainRefusal.BUSY: RETRAIN_BUSY,
            RetrainRefusal.TOO_FEW: RETRAIN_TOO_FEW,
            RetrainRefusal.CANNOT: RETRAIN_CANNOT,
        }[start.refusal or RetrainRefusal.CANNOT]
        return refused.format(error=start.reason)
    prepared = start.prepared
    return RETRAIN_STARTED.format(
        run=prepared.run.id,
        pairs=len(prepared.pairs),
        heldout=len(prepared.heldout),
        parent=prepared.parent.name,
    )


def opt_out_text(opted_out: bool) -> str:
    return OPTOUT_DONE if opted_out else OPTIN_DONE


def _block(title: str, counts: Counts) -> str:
    latency = "n/a" if counts.mean_latency_ms is None else f"{counts.mean_latency_ms:.0f} ms"
    return (
        f"{title}:\n"
        f"  users {counts.users:,}, chats {counts.chats:,} ({counts.group_chats:,} groups)\n"
        f"  messages {counts.user_messages:,}, replies {counts.bot_replies:,}, "
        f"mean reply latency {latency}\n"
        f"  ratings 👍 {counts.feedback_up:,} / 👎 {counts.feedback_down:,}"
    )


def _metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "none recorded"
    shown = {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}
    return json.dumps(shown, ensure_ascii=False, sort_keys=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m {secs}s" if days else f"{hours}h {minutes}m {secs}s"
