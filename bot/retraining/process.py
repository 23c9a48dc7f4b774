"""The worker process: started, held to its time limit, stopped when cancelled, its result read.

`python -m bot.retraining.worker` runs under this interpreter (`sys.executable`), with this
process's environment, in the directory our packages are imported from (`config.REPO_ROOT`):
`-m` puts its working directory first on the import path, so the worker runs this very code,
whether it is installed or run from a checkout, and a `config/` or `bot/` folder in the user's
working directory cannot shadow it. Every path the worker needs comes in its job, absolute.

A job with `distributed` runs `python -m bot.retraining.launch` instead (the same way), which
starts one worker per rank; when a rank fails, its `LaunchFailure` is the run's error.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bot.retraining.contract import LOG, Distributed, LaunchFailure, WorkerJob, WorkerResult
from config import REPO_ROOT

WORKER_MODULE = "bot.retraining.worker"
LAUNCH_MODULE = "bot.retraining.launch"
POLL_S = 0.25  # how quickly a cancellation or the time limit is noticed
LAUNCHER_STOP_S = 10.0  # a launcher asked to stop stops its ranks first; then it is killed


class WorkerFailed(Exception):
    """The training process did not produce a result (crashed, killed, too slow, cancelled)."""


def run_worker(
    job: WorkerJob,
    *,
    grace_minutes: float,
    cancel: threading.Event | None = None,
    lost: threading.Event | None = None,
    on_start: Callable[[int], object] = lambda pid: None,
) -> WorkerResult:
    """Run `job` in a worker process and return its result, or raise `WorkerFailed`.

    The worker stops itself after the job's training time budget; it is killed
    `grace_minutes` later (loading and evaluation take time too), or as soon as `cancel` is set
    (this process is stopping) or `lost` is (another process failed the run: see
    `runs.Heartbeat`). `on_start` gets the worker's pid once it runs.
    """
    budget = job.training.time_budget_minutes
    if budget is None:
        raise ValueError("a retraining job needs a training time budget")
    job_file = job.save()
    with (job.work_dir / LOG).open("ab") as log_file:
        process = subprocess.Popen(
            _command(job, job_file),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,  # the terminal's Ctrl-C goes to us; we stop the worker
        )
    try:
        on_start(process.pid)
        deadline = time.monotonic() + (budget + grace_minutes) * 60.0
        while True:
            try:
                code = process.wait(timeout=POLL_S)
                break
            except subprocess.TimeoutExpired:
                if cancel is not None and cancel.is_set():
                    raise WorkerFailed("cancelled: the service running it is stopping") from None
                if lost is not None and lost.is_set():
                    raise WorkerFailed(
                        "stopped: another process failed the run, its heartbeat being too old"
                    ) from None
                if time.monotonic() > deadline:
                    raise WorkerFailed(
                        f"the training process ran past its time limit ({budget:g} min "
                        f"training + {grace_minutes:g} min grace) and was stopped"
                    ) from None
    finally:
        if process.poll() is None:
            _stop(process, launcher=job.distributed is not None)
    failure = LaunchFailure.load(job.work_dir)
    if failure is not None:
        raise WorkerFailed(f"the data-parallel training failed: {failure.message}")
    if code < 0:
        raise WorkerFailed(f"the training process was killed (signal {-code})")
    if code != 0:  # its traceback's last lines say why
        tail = _log_tail(job.work_dir / LOG)
        raise WorkerFailed(f"the training process failed (exit code {code}){tail}")
    result = WorkerResult.load(job.work_dir)
    if result is None:
        raise WorkerFailed("the training process exited without a result")
    return result


def launcher_command(distributed: Distributed, device: str) -> list[str]:
    """The launcher of a distributed run (`bot.retraining.launch`), in this interpreter: the
    node that starts a run adds its job, a joining node (`chatbot retrain --join`) runs it as is."""
    return [
        sys.executable,
        "-m",
        LAUNCH_MODULE,
        *distributed.launcher_arguments(),
        "--device",
        device,
    ]


def _command(job: WorkerJob, job_file: Path) -> list[str]:
    if job.distributed is None:
        return [sys.executable, "-m", WORKER_MODULE, str(job_file)]
    return [
        *launcher_command(job.distributed, job.training.device),
        "--work-dir",
        str(job.work_dir),
        "--exit-with-parent",
        str(job_file),
    ]


def _stop(process: subprocess.Popen[bytes], *, launcher: bool) -> None:
    """Kill the worker; a launcher is first asked (SIGTERM) to stop its ranks itself (they
    would otherwise notice it gone within a second and exit)."""
    if launcher:
        process.terminate()
        try:
            process.wait(timeout=LAUNCHER_STOP_S)
            return
        except subprocess.TimeoutExpired:
            pass
    process.kill()
    process.wait()


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        tail = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line.strip() for line in tail)) if tail else ""
