"""A stand-in for the retraining job in scheduler tests: a stored schedule naming
`tests.support.scheduling:record_firing` runs through the real scheduler, leadership and firing
claims, and records which process ran which period instead of fine-tuning a model."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.retraining.scheduler import current_firing

FIRINGS_FILE_ENV = "TEST_FIRINGS_FILE"
JOB_FUNCTION = "tests.support.scheduling:record_firing"


def record_firing() -> None:
    """Append `pid scheduled-time wall-time` to the file named by $TEST_FIRINGS_FILE."""
    firing = current_firing()
    if firing is None:
        raise RuntimeError("record_firing ran outside a scheduled firing")
    due = firing.scheduled_at.astimezone(UTC).isoformat()
    with open(os.environ[FIRINGS_FILE_ENV], "a", encoding="utf-8") as out:
        out.write(f"{os.getpid()} {due} {time.time():.3f}\n")  # one short append: atomic


@dataclass(frozen=True)
class Fired:
    pid: int
    due: datetime
    at: float  # wall-clock time it ran


def read_firings(path: Path) -> list[Fired]:
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        Fired(int(pid), datetime.fromisoformat(due), float(at))
        for pid, due, at in (line.split() for line in lines)
    ]
