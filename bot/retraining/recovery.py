"""Runs whose process died: found and marked failed, so the one-run lock never stays stuck.

A running run records its owner (host, pid, and the pid's start time, so a reused pid is not
mistaken for the owner), once started its worker's pid, and a heartbeat in the database that its
process refreshes every `retrain.heartbeat_seconds` (`runs.Heartbeat`). `recover` is called when
the bot, the scheduler or `chatbot retrain` starts, and before every run: a run is marked failed
when its owner is a dead process on this host (known at once), when its heartbeat is older than
`retrain.dead_after_seconds` (its process died, froze or lost the database, on whichever host:
a pid says nothing about another host), or when it has run longer than
`retrain.stale_after_hours`. Work directories left by runs that are no longer running are
removed. Model version directories are never touched.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from config import Settings
from storage import training_runs
from storage.database import Database

log = logging.getLogger(__name__)

WORK_DIR_PREFIX = ".run-"


def work_dir(settings: Settings, run_id: int) -> Path:
    """Where run `run_id`'s worker writes (a hidden sibling of the version directories)."""
    return settings.versions_dir / f"{WORK_DIR_PREFIX}{run_id}"


def owner_stamp() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": process_start_time(pid)}


def process_start_time(pid: int) -> int | None:
    """The start time of `pid` in clock ticks since boot (Linux); None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


def owner_alive(owner: dict[str, Any]) -> bool | None:
    """Whether the recorded owner process still runs; None when it runs on another host."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return None
    pid = owner["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    started = owner.get("pid_started")
    return started is None or process_start_time(pid) in (None, started)


def recover(settings: Settings, db: Database) -> list[int]:
    """Mark runs whose process died failed; remove leftover work directories. The failed ids."""
    r = settings.retrain
    with db.begin() as session:
        failed: list[int] = []
        for run in _running(session):
            owner = (run.metrics or {}).get("owner") or {}
            if owner_alive(owner) is False:
                training_runs.fail_run(
                    session,
                    run.id,
                    f"the process running it (pid {owner['pid']} on {owner['host']}) died",
                    metrics=run.metrics,
                )
                failed.append(run.id)
        silent = training_runs.fail_silent_runs(session, timedelta(seconds=r.dead_after_seconds))
        failed.extend(run.id for run in silent)
        before = _running(session)
        training_runs.fail_stale_runs(session, timedelta(hours=r.stale_after_hours))
        running = {run.id for run in _running(session)}
        failed.extend(run.id for run in before if run.id not in running)
    for run_id in failed:
        log.warning("training run %s was left running by a dead process: marked failed", run_id)
    _remove_leftover_work_dirs(settings.versions_dir, running)
    return failed


def _running(session: Any) -> list[training_runs.RunInfo]:
    run = training_runs.running_run(session)
    return [] if run is None else [run]


def _remove_leftover_work_dirs(versions_dir: Path, running: set[int]) -> None:
    if not versions_dir.is_dir():
        return
    for entry in versions_dir.iterdir():
        if not entry.name.startswith(WORK_DIR_PREFIX) or not entry.is_dir():
            continue
        suffix = entry.name.removeprefix(WORK_DIR_PREFIX)
        if suffix.isdigit() and int(suffix) not in running:
            shutil.rmtree(entry, ignore_errors=True)
