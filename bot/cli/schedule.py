"""`chatbot schedule add --cron EXPR | list | remove ID`, and `chatbot scheduler`.

Schedules live in the app database (APScheduler's job store). `chatbot scheduler` takes the
scheduler role (`bot.roles`): run as many as you like; one leads and runs the schedules and
retention, the others stand by and take over within `retrain.leader_poll_seconds` when it dies.
`chatbot telegram` takes the role too with SQLite (see `retrain.run_scheduler`). Cron
expressions have 5 fields (minute hour day month weekday) and are read in `retrain.timezone`
(UTC by default). `--metrics-port` (CHATBOT_RETRAIN__METRICS_PORT) serves the role's metrics
(`chatbot_leader`, `chatbot_retrain_runs_total`, the last run's time and outcome) at /metrics.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from bot.cli import arguments
from bot.cli.errors import CliError
from config import Settings
from storage.database import Database

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schedule", help="add, list or remove retraining schedules")
    commands = parser.add_subparsers(dest="schedule_command", required=True, metavar="COMMAND")
    add = commands.add_parser("add", help="retrain on a cron schedule, e.g. --cron '0 3 * * *'")
    add.add_argument("--cron", required=True, metavar="EXPR", help="minute hour day month weekday")
    commands.add_parser("list", help="the stored schedules and their next run")
    remove = commands.add_parser("remove", help="delete the schedule with id ID")
    remove.add_argument("id", metavar="ID")
    parser.set_defaults(run=run_schedule)

    standalone = subparsers.add_parser(
        "scheduler",
        help="run the retraining schedules and retention without the bot",
        description="Run the stored retraining schedules and the retention of old messages "
        "until SIGINT/SIGTERM; results go to the admins on Telegram when a token is configured. "
        "Any number may run: one leads (a PostgreSQL advisory lock; with SQLite a lock file), "
        "the others stand by and take over when it dies.",
    )
    standalone.add_argument(
        "--metrics-port",
        type=arguments.port,
        metavar="N",
        help="serve Prometheus metrics at /metrics on this port (default: "
        "CHATBOT_RETRAIN__METRICS_PORT; none)",
    )
    standalone.add_argument(
        "--metrics-listen",
        metavar="HOST",
        help="address of that listener (default: CHATBOT_RETRAIN__METRICS_LISTEN, 127.0.0.1)",
    )
    standalone.set_defaults(run=run_scheduler, log_level=logging.INFO)


def _open(settings: Settings) -> Database:
    from storage import schema_revision

    db = Database.from_settings(settings)
    try:
        schema_revision.ensure_schema(db, settings.storage.auto_upgrade)
    except BaseException:
        db.dispose()
        raise
    return db


def run_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from bot.retraining.errors import InvalidScheduleError
    from bot.retraining.scheduler import RetrainScheduler

    db = _open(settings)
    try:
        schedules = RetrainScheduler(settings, db)
        if args.schedule_command == "add":
            added = schedules.add(args.cron)
            print(f"{added.id}  {added.cron}  next run {_when(added.next_run)}")
        elif args.schedule_command == "list":
            found = schedules.list()
            if not found:
                print("no retraining schedules")
            for s in found:
                print(f"{s.id}  {s.cron}  next run {_when(s.next_run)}")
        else:
            schedules.remove(args.id)
            print(f"removed schedule {args.id}")
    except InvalidScheduleError as exc:
        raise CliError(str(exc)) from None
    finally:
        db.dispose()
    return 0


def _when(moment: object) -> str:
    return "never (paused)" if moment is None else f"{moment:%Y-%m-%d %H:%M %Z}"


def run_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from bot.observability.metrics_server import MetricsServer

    port = args.metrics_port if args.metrics_port is not None else settings.retrain.metrics_port
    listen = args.metrics_listen or settings.retrain.metrics_listen
    try:
        metrics_server = None if port is None else MetricsServer.start(listen, port)
    except OSError as exc:  # socket.gaierror (an unknown host) is one too
        raise CliError(f"cannot listen on {listen}:{port}: {exc.strerror or exc}") from None
    try:
        return _run_role(settings)
    finally:
        if metrics_server is not None:
            metrics_server.stop()


def _run_role(settings: Settings) -> int:
    from bot.roles import SchedulerRole

    db = _open(settings)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    role = SchedulerRole(settings, db)
    try:
        role.start()
        while not stop.wait(1.0):
            pass
    finally:
        role.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        db.dispose()
    return 0
