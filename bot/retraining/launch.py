"""The launcher of a data-parallel retraining: `python -m bot.retraining.launch --nproc-per-node
N [--nnodes M --rdzv-endpoint HOST:PORT --rdzv-id ID] --device DEVICE [--work-dir DIR] [JOB]`.

It is torchrun's elastic agent for this node (`nlp.distributed.launch`): it starts N ranks of
`python -m bot.retraining.worker --rank` and, with several nodes, meets the other nodes' agents
at the rendezvous endpoint. The node that starts the run passes the job file (its first rank is
the main rank); the others (`chatbot retrain --join`) pass none and receive what to train on.
A rank that fails stops the others: the launcher exits 1 and writes which rank failed and why to
`--work-dir` (a `LaunchFailure`), which the run records as its error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from bot.observability import log_setup
from bot.retraining.contract import LaunchFailure
from bot.retraining.worker import exit_when_orphaned

WORKER_MODULE = "bot.retraining.worker"
EXIT_FAILED = 1

log = logging.getLogger("bot.retraining.launch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.retraining.launch")
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--rdzv-endpoint", default=None)
    parser.add_argument("--rdzv-id", default="chatbot-retrain")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--work-dir", type=Path, default=None, help="where a failure is written")
    parser.add_argument(
        "--exit-with-parent", action="store_true", help="stop when the process that started it dies"
    )
    parser.add_argument("job", nargs="?", type=Path, help="WORK_DIR/job.json (the main node)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    log_setup.configure(logging.INFO)
    if args.exit_with_parent:  # the ranks in turn exit when this launcher is gone
        threading.Thread(
            target=exit_when_orphaned, args=(os.getppid(),), daemon=True, name="orphan-watch"
        ).start()

    from nlp.distributed import RankFailed, Rendezvous, launch

    command = [sys.executable, "-m", WORKER_MODULE, "--rank", "--device", args.device]
    if args.job is not None:
        command.append(str(args.job))
    try:
        launch(
            command,
            nproc_per_node=args.nproc_per_node,
            rendezvous=Rendezvous(args.nnodes, args.rdzv_endpoint, args.rdzv_id),
            log_dir=args.work_dir / "ranks" if args.work_dir else None,
        )
    except RankFailed as failed:
        if args.work_dir is not None:
            LaunchFailure(message=str(failed)).save(args.work_dir)
        print(f"data-parallel training failed: {failed}", file=sys.stderr)
        return EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
