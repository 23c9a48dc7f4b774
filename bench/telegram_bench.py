"""Telegram load: 200 chats x 5 messages through the fake Bot API and the real PTB stack.

Everything but Telegram itself is real: getUpdates long polling over HTTP, the PTB Application
with concurrent updates, the dialogue service, the model, a migrated SQLite database in a temp
dir. All 200 chats talk at once; within a chat each message is sent when the reply to the
previous one has arrived (how people chat), so up to 200 messages are in flight.

Measured for micro-batching on (the default `DialogueSettings`) and off (`max_batch_size=1`,
`batch_window_ms=0`) in the same run: replies per second (first update pushed to last reply
received), and latency from an update being queued at the fake server to the bot's sendMessage
for it arriving there (p50, p95, max). Then checks that every message was stored once and
answered exactly once: no reply lost, none duplicated. With 200 chats waiting on their replies,
latency is at least 200 / throughput (Little's law), so the same bot is also measured with only
10 chats talking: the latency one person sees when the bot is not saturated.

Outgoing flood control is off for the run (`flood_messages_per_second=0`): Telegram's own limit
(about 30 messages per second per bot) would otherwise be all this measures. Targets: batched
>= 3x unbatched throughput, batched p95 <= 300 ms with the default model, zero lost or
duplicated replies. Run alone with `python -m bench.telegram_bench --model DIR [--quick]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.app import build_app
from bot.telegram import build_application, running
from config import DialogueSettings, Settings, TelegramSettings
from config.settings import REPO_ROOT
from storage import schema_revision
from storage.database import Database
from storage.tables import Chat, Message
from tests.support.fake_telegram import ApiCall, FakeTelegram
from tests.support.fake_telegram import updates as tg

CHATS, MESSAGES = 200, 5
QUICK_CHATS, QUICK_MESSAGES = 40, 3
LIGHT_CHATS = 10  # a second, light load on the same bot, for latency when not saturated
TARGET_SPEEDUP = 3.0
TARGET_P95_MS = 300.0
REPLY_TIMEOUT_S = 120.0
LINES = [
    "hello",
    "how are you?",
    "what do you do for fun?",
    "do you like music?",
    "where are you from?",
    "what is your favorite food?",
    "tell me about your weekend",
    "good night",
]
MODES = {
    "batched": DialogueSettings(),
    "unbatched": DialogueSettings(batch_window_ms=0.0, max_batch_size=1),
}


def run(model_dir: Path, quick: bool = False) -> dict[str, Any]:
    """Both modes on `model_dir`; prints a table and returns the numbers, targets and checks."""
    chats, messages = (QUICK_CHATS, QUICK_MESSAGES) if quick else (CHATS, MESSAGES)
    results: dict[str, Any] = {
        "model": str(model_dir),
        "chats": chats,
        "messages_per_chat": messages,
        "load": "all chats at once; each chat's next message after its previous reply",
    }
    for mode, dialogue in MODES.items():
        results[mode] = asyncio.run(_measure(Path(model_dir), dialogue, chats, messages))
    batched, unbatched = results["batched"], results["unbatched"]
    speedup = batched["replies_per_s"] / unbatched["replies_per_s"]
    results["speedup"] = round(speedup, 2)
    results["targets"] = {"speedup": TARGET_SPEEDUP, "batched_p95_ms": TARGET_P95_MS}
    results["passed"] = {
        "speedup": speedup >= TARGET_SPEEDUP,
        "batched_p95": batched["p95_ms"] <= TARGET_P95_MS,
        "batched_p95_light_load": batched["light_p95_ms"] <= TARGET_P95_MS,
        "exactly_once": all(results[m]["lost"] == results[m]["duplicated"] == 0 for m in MODES),
    }
    _print_table(results)
    return results


async def _measure(
    model_dir: Path, dialogue: DialogueSettings, chats: int, messages: int
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="telegram-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'chatbot.db'}"
        db = Database(url)
        schema_revision.upgrade(db)
        db.dispose()
        async with FakeTelegram() as fake:
            settings = _settings(fake, url, Path(tmp), model_dir, dialogue, messages)
            app = build_app(settings, follow_registry=False)
            try:
                async with running(build_application(app)) as bot:
                    return await _load(fake, bot.application, app.db, chats, messages)
            finally:
                await app.close()


def _settings(
    fake: FakeTelegram,
    url: str,
    data_dir: Path,
    model_dir: Path,
    dialogue: DialogueSettings,
    messages: int,
) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        database_url=url,
        model_dir=model_dir,
        telegram_token=SecretStr(fake.token),
        telegram_base_url=fake.base_url,
        admin_ids=[],
        db_auto_upgrade=False,
        telegram=TelegramSettings(
            flood_messages_per_second=0,
            rate_limit_messages=messages + 1,
            poll_timeout_seconds=10,
        ),
        dialogue=dialogue,
    )


async def _load(
    fake: FakeTelegram, application: Any, db: Database, chats: int, messages: int
) -> dict[str, Any]:
    replies: dict[int, asyncio.Queue[ApiCall]] = defaultdict(asyncio.Queue)

    def on_call(call: ApiCall) -> None:
        if call.method == "sendMessage" and call.ok:
            replies[int(call.params["chat_id"])].put_nowait(call)

    fake.listeners.append(on_call)
    await _conversation(fake, replies, tg.user(1, "Warm Up"), 2, [])  # first decodes are slow
    await asyncio.wait_for(application.update_queue.join(), REPLY_TIMEOUT_S)
    before = _stored(db)

    people = [tg.user(10_000 + i, f"Person {i}") for i in range(chats)]
    latencies, elapsed, cpu = await _talk(fake, replies, people, messages)
    await fake.wait_until_fetched(timeout=REPLY_TIMEOUT_S)
    await asyncio.wait_for(application.update_queue.join(), REPLY_TIMEOUT_S)

    sent: defaultdict[int, int] = defaultdict(int)
    for call in fake.calls_to("sendMessage"):
        sent[int(call.params["chat_id"])] += 1
    chat_actions = sum(int(c.params["chat_id"]) >= 10_000 for c in fake.calls_to("sendChatAction"))
    stored = _stored(db)
    expected = chats * messages
    per_chat = [sent[p["id"]] for p in people]
    ordered = sorted(latencies)
    # The same bot under light load: what one person waits when the bot is not saturated.
    light = [tg.user(20_000 + i, f"Visitor {i}") for i in range(LIGHT_CHATS)]
    light_latencies = sorted((await _talk(fake, replies, light, messages))[0])
    return {
        "messages": expected,
        "seconds": round(elapsed, 2),
        "replies_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(_percentile(ordered, 50) * 1000, 1),
        "p95_ms": round(_percentile(ordered, 95) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
        # CPU of this whole process (bot, model threads, fake server, load driver) per reply:
        # a number that depends less on what else the machine is doing than the times above.
        "cpu_ms_per_reply": round(cpu / len(latencies) * 1000, 2),
        "light_load_chats": LIGHT_CHATS,
        "light_p50_ms": round(_percentile(light_latencies, 50) * 1000, 1),
        "light_p95_ms": round(_percentile(light_latencies, 95) * 1000, 1),
        "typing_indicators": chat_actions,  # shown when a reply took over typing_delay_seconds
        "replies_sent": sum(per_chat),
        "stored_turns": stored["turns"] - before["turns"],
        "stored_replies": stored["replies"] - before["replies"],
        "replies_with_telegram_id": stored["sent"] - before["sent"],
        "lost": sum(max(0, messages - n) for n in per_chat),
        "duplicated": sum(max(0, n - messages) for n in per_chat),
    }


async def _talk(
    fake: FakeTelegram,
    replies: dict[int, asyncio.Queue[ApiCall]],
    people: list[dict[str, Any]],
    messages: int,
) -> tuple[list[float], float, float]:
    """Everyone talks at once; (latencies, wall seconds, process CPU seconds)."""
    latencies: list[float] = []
    cpu_started, started = time.process_time(), time.monotonic()
    await asyncio.gather(*(_conversation(fake, replies, p, messages, latencies) for p in people))
    return latencies, time.monotonic() - started, time.process_time() - cpu_started


async def _conversation(
    fake: FakeTelegram,
    replies: dict[int, asyncio.Queue[ApiCall]],
    person: dict[str, Any],
    messages: int,
    latencies: list[float],
) -> None:
    for i in range(messages):
        pushed = time.monotonic()
        fake.say(person, LINES[(person["id"] + i) % len(LINES)])
        reply = await asyncio.wait_for(replies[person["id"]].get(), REPLY_TIMEOUT_S)
        latencies.append(reply.at - pushed)


def _stored(db: Database) -> dict[str, int]:
    def count(session: Session) -> dict[str, int]:
        turns, replies, sent = session.execute(
            select(
                func.count().filter(Message.from_bot.is_(False)),
                func.count().filter(Message.from_bot.is_(True)),
                func.count().filter(Message.from_bot.is_(True), Message.external_id.is_not(None)),
            )
            .select_from(Message)
            .join(Chat, Chat.id == Message.chat_id)
            .where(Chat.platform == "telegram")
        ).one()
        return {"turns": turns, "replies": replies, "sent": sent}

    return db.read(count)


def _percentile(ordered: list[float], q: float) -> float:
    index = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def _print_table(results: dict[str, Any]) -> None:
    print(
        f"telegram: {results['chats']} chats x {results['messages_per_chat']} messages "
        f"({results['load']}), model {results['model']}"
    )
    print(
        f"  {'mode':<10} {'replies/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} "
        f"{'CPU ms':>7} {'light p50/p95':>14}  check"
    )
    for mode in MODES:
        r = results[mode]
        check = (
            "every message stored and answered once"
            if r["lost"] == r["duplicated"] == 0
            and r["stored_turns"] == r["stored_replies"] == r["replies_sent"] == r["messages"]
            else f"LOST {r['lost']}, DUPLICATED {r['duplicated']}, stored {r['stored_turns']}"
        )
        light = f"{r['light_p50_ms']:.0f}/{r['light_p95_ms']:.0f}"
        print(
            f"  {mode:<10} {r['replies_per_s']:>10.1f} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
            f"{r['max_ms']:>8.1f} {r['cpu_ms_per_reply']:>7.1f} {light:>14}  {check}"
        )
    print(
        f"  batched / unbatched: {results['speedup']:.2f}x (target {TARGET_SPEEDUP:.0f}x); "
        f"batched p95 {results['batched']['p95_ms']:.0f} ms, with {LIGHT_CHATS} chats "
        f"{results['batched']['light_p95_ms']:.0f} ms (target <= {TARGET_P95_MS:.0f} ms)"
    )
    print(
        "  (CPU ms: this process's CPU per reply, fake server and load driver included; "
        "light: the same bot with only 10 chats talking)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=REPO_ROOT / "models" / "default",
        help="checkpoint directory (default: models/default)",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_CHATS} chats x {QUICK_MESSAGES}"
    )
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    results = run(args.model, quick=args.quick)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
