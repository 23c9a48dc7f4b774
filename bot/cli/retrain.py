"""`chatbot retrain [--force]`: one retraining run now; prints its result as JSON.

Exit 0 when the run ended with a decision (promoted or rejected), 1 when it failed (the error is
in the JSON and recorded with the run), 2 for what the user can fix: a run is already running,
too few new pairs (`--force` trains on them anyway), a bad setting.
"""

from __future__ import annotations

import argparse
import logging

from bot.cli.errors import CliError
from config import Settings

EXIT_FAILED = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "retrain",
        help="fine-tune the active model on the chat logs since the last run",
        description="Export the training pairs collected since the last successful run, "
        "fine-tune the active model on them (mixed with a sample of the base corpus) in a "
        "separate process, and promote the result only if it passes the evaluation gate. "
        "Settings: CHATBOT_RETRAIN__*.",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="run even with fewer new pairs than retrain.min_new_pairs (at least 2)",
    )
    p.set_defaults(run=run, log_level=logging.INFO)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.retraining.errors import RetrainError
    from bot.retraining.job import run_retrain
    from storage import schema_revision
    from storage.database import Database

    db = Database.from_settings(settings)
    try:
        schema_revision.ensure_schema(db, settings.storage.auto_upgrade)
        try:
            outcome = run_retrain(settings, db, trigger="cli", force=args.force)
        except RetrainError as exc:
            raise CliError(str(exc)) from None
    finally:
        db.dispose()
    print(outcome.to_json())
    return EXIT_FAILED if outcome.status == "failed" else 0
