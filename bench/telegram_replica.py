"""One `chatbot` process with its CPU accounted for, for the Telegram benchmark.

`python -m bench.telegram_replica STATS_FILE [chatbot arguments...]` runs the real CLI
(`bot.cli.main`) unchanged, with two measurements added from outside the product code:

- the thread CPU time spent decoding (`Responder.generate`, which the micro-batcher calls in a
  worker thread), with torch on one thread so that the decode's CPU is all in that thread;
- the thread CPU time of each database call (`Database.transact` / `Database.read`, which
  `db.run` / `db.run_read` call in worker threads), by the function it ran.

On SIGUSR1 the process writes a snapshot to STATS_FILE (atomically): its own CPU time (all threads,
`resource.getrusage`), the decode and database totals, and the snapshot's number. The benchmark
takes one before and one after its load: CPU outside the decode is the difference of the two.
With `BENCH_PROFILE=FILE`, the main thread (event loop: HTTP server, PTB, handlers, HTTP client)
is profiled with cProfile, timed by the thread's CPU clock (not the wall clock, which a loaded
machine inflates), between the first and the second snapshot; the statistics go to FILE
(pstats format). cProfile counts every resumption of a coroutine as a call: read its times, not
its call counts.
"""

from __future__ import annotations

import cProfile
import json
import os
import resource
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

PROFILE_ENV = "BENCH_PROFILE"


@dataclass
class Snapshot:
    """What the process did up to now (cumulative since it started)."""

    number: int
    cpu_s: float  # user + system CPU of every thread of the process
    decode_cpu_s: float
    decodes: int  # batched decode calls
    decoded_contexts: int  # replies decoded
    db_cpu_s: dict[str, float] = field(default_factory=dict)  # by the function run
    db_calls: dict[str, int] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Snapshot:
        return cls(**json.loads(path.read_text()))


class Meter:
    """Thread CPU time of the calls it wraps, summed under a name; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.calls: defaultdict[str, int] = defaultdict(int)
        self.items: defaultdict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float, items: int = 1) -> None:
        with self._lock:
            self.seconds[name] += seconds
            self.calls[name] += 1
            self.items[name] += items


DECODE = "decode"


def instrument(decodes: Meter, database: Meter) -> None:
    """Wrap the decode and the database calls of this process (before the CLI imports them)."""
    import torch

    from nlp.responder import Responder
    from storage.database import Database

    torch.set_num_threads(1)  # the decode's CPU is then all in the thread that calls it
    generate = Responder.generate

    def measured_generate(self: Responder, contexts: Sequence[Any], *args: Any, **kw: Any) -> Any:
        started = time.thread_time()
        try:
            return generate(self, contexts, *args, **kw)
        finally:
            decodes.add(DECODE, time.thread_time() - started, len(contexts))

    Responder.generate = measured_generate  # type: ignore[method-assign]
    for method in ("transact", "read"):
        setattr(Database, method, _measured_call(getattr(Database, method), database))


def _measured_call(call: Callable[..., Any], meter: Meter) -> Callable[..., Any]:
    def measured(self: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return call(self, fn, *args, **kwargs)
        finally:
            name = getattr(fn, "__qualname__", repr(fn))
            meter.add(f"{getattr(fn, '__module__', '?')}.{name}", time.thread_time() - started)

    return measured


class Snapshots:
    """Writes a snapshot on SIGUSR1; profiles the main thread between the first two."""

    def __init__(self, path: Path, decodes: Meter, database: Meter, profile: Path | None) -> None:
        self.path = path
        self.decodes = decodes
        self.database = database
        self.profile_path = profile
        self.profiler: cProfile.Profile | None = None
        self.taken = 0

    def install(self) -> None:
        signal.signal(signal.SIGUSR1, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.taken += 1
        if self.profile_path is not None:
            if self.taken == 1:
                self.profiler = cProfile.Profile(time.thread_time)  # CPU, not waiting
                self.profiler.enable()
            elif self.taken == 2 and self.profiler is not None:
                self.profiler.disable()
                self.profiler.dump_stats(str(self.profile_path))
        self.write()

    def write(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        snapshot = Snapshot(
            number=self.taken,
            cpu_s=usage.ru_utime + usage.ru_stime,
            decode_cpu_s=self.decodes.seconds[DECODE],
            decodes=self.decodes.calls[DECODE],
            decoded_contexts=self.decodes.items[DECODE],
            db_cpu_s=dict(self.database.seconds),
            db_calls=dict(self.database.calls),
        )
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(snapshot)))
        os.replace(temporary, self.path)


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m bench.telegram_replica STATS_FILE [chatbot arguments...]")
        return 2
    decodes, database = Meter(), Meter()
    instrument(decodes, database)
    profile = os.environ.get(PROFILE_ENV)
    Snapshots(Path(argv[0]), decodes, database, Path(profile) if profile else None).install()
    from bot.cli import main as chatbot

    return chatbot(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
