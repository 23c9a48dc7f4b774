"""`make bench`: every speed target, measured side by side in one run on this machine.

Prints each part's table and a summary of ratios against the targets; writes everything to
`bench/results/bench-<UTC time>.json` and `bench/results/latest.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from bench import nlp_bench, storage_bench, telegram_bench

RESULTS = Path(__file__).resolve().parent / "results"
PARTS = ("nlp", "storage", "telegram")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("models/default"),
        help="checkpoint for latency and load runs (default: models/default)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs (a smoke test, not a result)"
    )
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    args = parser.parse_args()
    parts = args.only or list(PARTS)
    results: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "processor": platform.processor() or platform.machine(),
        },
    }
    started = time.perf_counter()
    for part in parts:
        print(f"\n== {part} ==", flush=True)
        if part == "nlp":
            results["nlp"] = nlp_bench.run(args.model, args.quick)
        elif part == "storage":
            results["storage"] = storage_bench.run(args.quick)
        elif part == "telegram":
            results["telegram"] = telegram_bench.run(args.model, args.quick)
    results["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2, default=str) + "\n"
    (RESULTS / f"bench-{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(f"\nresults: bench/results/bench-{stamp}.json ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
