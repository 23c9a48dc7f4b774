"""`chatbot chat`: talk to the model in the terminal (or pipe lines in: one reply per line)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from bot.cli.model_commands import add_decoding_options, check_blocklist, decoding_from_args
from config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chat",
        help="chat with the bot in the terminal",
        description="A console chat stored like Telegram chats (platform 'console'). "
        "Interactive on a terminal; with piped input it prints one reply per input line.",
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="checkpoint directory (default: the active version, else CHATBOT_MODEL_DIR)",
    )
    add_decoding_options(p)
    p.set_defaults(run=run_chat)


def run_chat(args: argparse.Namespace, settings: Settings) -> int:
    from bot.admin_service import AdminService
    from bot.app import build_app
    from bot.console import ConsoleChat

    updates: dict[str, object] = {"decoding": decoding_from_args(settings, args)}
    check_blocklist(settings.retrain.blocklist_path)  # every reply of the bot obeys it too
    if args.model is not None:
        updates["model_dir"] = args.model
    settings = settings.model_copy(update=updates)
    app = build_app(settings, follow_registry=args.model is None)  # an explicit --model wins

    async def chat() -> int:
        try:
            exports = settings.data_dir / "exports"  # where /export writes
            return await ConsoleChat(app.service, AdminService(app), exports_dir=exports).run()
        finally:
            await app.close()

    try:
        return asyncio.run(chat())
    except KeyboardInterrupt:  # Ctrl-C while a reply was being generated
        print("\nBye!")
        return 0
