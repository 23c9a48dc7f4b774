"""`chatbot retrain [--force] [--nproc N [--nnodes M --rdzv-endpoint HOST:PORT]] | --join ...`:
one retraining run now; prints its result as JSON.

Exit 0 when the run ended with a decision (promoted or rejected), 1 when it failed (the error is
in the JSON and recorded with the run), 2 for what the user can fix: a run is already running,
too few new pairs (`--force` trains on them anyway), a bad setting.

`--nproc N` fine-tunes with N data-parallel processes (torch.distributed, launched by torchrun's
elastic agent; default `retrain.nproc`). On several nodes, the node that runs `chatbot retrain
--nnodes M --rdzv-endpoint HOST:PORT` owns the run (the database, the job, the result); every
other node runs `chatbot retrain --join --nproc N --nnodes M --rdzv-endpoint HOST:PORT`, which
trains what the first node sends it and needs no database (exit 0 when its ranks succeeded).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
from typing import Any

from bot.cli import arguments
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
    p.add_argument(
        "--nproc",
        type=arguments.positive_int,
        metavar="N",
        help="data-parallel training processes on this node (default: retrain.nproc)",
    )
    p.add_argument(
        "--nnodes",
        type=arguments.positive_int,
        metavar="M",
        help="nodes training together (default: retrain.nnodes); needs --rdzv-endpoint",
    )
    p.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="where the nodes meet (torchrun's c10d rendezvous; default: retrain.rdzv_endpoint)",
    )
    p.add_argument(
        "--rdzv-id", metavar="ID", help="the run's id, the same on every node (retrain.rdzv_id)"
    )
    p.add_argument(
        "--join",
        action="store_true",
        help="train as another node of a run that `chatbot retrain --nnodes M` started elsewhere",
    )
    p.set_defaults(run=run, log_level=logging.INFO)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from bot.retraining.errors import RetrainError
    from bot.retraining.job import run_retrain
    from storage import schema_revision
    from storage.database import Database

    try:
        settings = _with_options(settings, args)
    except ValidationError as exc:
        raise CliError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if args.join:
        return _join(settings, force=args.force)
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


def _with_options(settings: Settings, args: argparse.Namespace) -> Settings:
    """`settings` with the command line's distribution options over `retrain.*`."""
    from config import RetrainSettings

    options = {
        "nproc": args.nproc,
        "nnodes": args.nnodes,
        "rdzv_endpoint": args.rdzv_endpoint,
        "rdzv_id": args.rdzv_id,
    }
    changes: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if not changes:
        return settings
    retrain = RetrainSettings.model_validate({**settings.retrain.model_dump(), **changes})
    return settings.model_copy(update={"retrain": retrain})


def _join(settings: Settings, *, force: bool) -> int:
    """This node's ranks of a run another node started (see the module docstring)."""
    from bot.retraining.contract import Distributed
    from bot.retraining.process import launcher_command
    from config import REPO_ROOT

    r = settings.retrain
    if force:
        raise CliError("--force belongs to the node that starts the run, not to --join")
    if r.nnodes < 2:
        raise CliError("--join trains with another node: give --nnodes (2 or more)")
    command = launcher_command(Distributed.of(r), r.training.device)
    # As the run's own launcher is started: this interpreter, from the directory our code is in.
    return subprocess.run(command, cwd=REPO_ROOT, check=False).returncode
