"""Storage throughput: turns saved per second, a user turn + the bot reply in one transaction each.

Measured the way the app writes: `save_exchange` (find-or-create chat and user, insert both
messages) inside `Database.begin()`, on SQLite (a file in a temp dir) and PostgreSQL (a fresh
temporary database), with one writer and with 20 concurrent writer threads, each in its own chat.
Targets (from the storage issue): >= 1,000 turns/s on PostgreSQL with 20 writers, >= 300 turns/s
on SQLite. Run alone with `python -m bench.storage_bench [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from storage import schema_revision
from storage.conversations import ChatRef, UserRef, save_exchange
from storage.database import Database, normalize_url

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGETS = {"postgresql": 1000.0, "sqlite": 300.0}  # turns/s with 20 writers
WRITERS = 20


def _save_turns(db: Database, writer: int, turns: int, start: threading.Barrier) -> None:
    chat = ChatRef("telegram", f"bench-{writer}")
    user = UserRef("telegram", f"bench-user-{writer}", f"Writer {writer}")
    with db.begin() as session:  # first contact creates chat and user: not what we time
        save_exchange(session, chat, user, "hello", "hi", model_version="bench", latency_ms=1.0)
    start.wait()
    for i in range(turns):
        with db.begin() as session:
            save_exchange(
                session,
                chat,
                user,
                f"turn {i} 💬",
                f"reply {i}",
                model_version="bench",
                latency_ms=3.2,
            )


def turns_per_second(db: Database, writers: int, turns_per_writer: int) -> float:
    """Run `writers` threads saving `turns_per_writer` exchanges each; turns per second."""
    start = threading.Barrier(writers + 1)
    errors: list[BaseException] = []

    def work(writer: int) -> None:
        try:
            _save_turns(db, writer, turns_per_writer, start)
        except BaseException as exc:
            errors.append(exc)
            start.abort()

    threads = [threading.Thread(target=work, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise errors[0]
    return writers * turns_per_writer / elapsed


@contextmanager
def _sqlite_database() -> Iterator[Database]:
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as directory:
        db = Database(f"sqlite:///{Path(directory) / 'bench.db'}")
        try:
            schema_revision.upgrade(db)
            yield db
        finally:
            db.dispose()


@contextmanager
def _postgres_database(url: URL) -> Iterator[Database]:
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"bench_{uuid4().hex}"
    quoted = admin.dialect.identifier_preparer.quote_identifier(name)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {quoted}")
        db = Database(url.set(database=name))
        try:
            schema_revision.upgrade(db)
            yield db
        finally:
            db.dispose()
            with admin.connect() as connection:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)")
    finally:
        admin.dispose()


def _measure(make_db: Any, quick: bool) -> dict[str, float]:
    single_turns, concurrent_turns = (300, 40) if quick else (1000, 100)
    results: dict[str, float] = {}
    with make_db() as db:
        results["single_writer"] = turns_per_second(db, 1, single_turns)
    with make_db() as db:
        results[f"writers_{WRITERS}"] = turns_per_second(db, WRITERS, concurrent_turns)
    return results


def run(quick: bool = False) -> dict[str, Any]:
    """Measure both backends; prints a table and returns the numbers (turns/s) and targets."""
    results: dict[str, Any] = {"unit": "turns/s (turn + reply, one transaction each)"}
    results["sqlite"] = _measure(_sqlite_database, quick)
    url = normalize_url(
        os.environ.get("CHATBOT_BENCH_POSTGRES_URL")
        or os.environ.get("CHATBOT_TEST_POSTGRES_URL")
        or POSTGRES_URL
    )
    try:
        results["postgresql"] = _measure(lambda: _postgres_database(url), quick)
    except OperationalError as exc:
        results["postgresql"] = {
            "skipped": f"not reachable at {url.render_as_string()}: {exc.orig}"
        }
    results["targets"] = {backend: {f"writers_{WRITERS}": t} for backend, t in TARGETS.items()}
    _print_table(results)
    return results


def _print_table(results: dict[str, Any]) -> None:
    print("storage: turns saved per second (turn + reply, one transaction each)")
    print(f"  {'backend':<11} {'1 writer':>10} {f'{WRITERS} writers':>11} {'target':>8}  ratio")
    for backend in ("sqlite", "postgresql"):
        numbers = results[backend]
        if "skipped" in numbers:
            print(f"  {backend:<11} skipped: {numbers['skipped']}")
            continue
        concurrent = numbers[f"writers_{WRITERS}"]
        target = TARGETS[backend]
        print(
            f"  {backend:<11} {numbers['single_writer']:>10.0f} {concurrent:>11.0f} "
            f"{target:>8.0f}  {concurrent / target:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer turns (a smoke run)")
    parser.add_argument("--json", action="store_true", help="also print the results as JSON")
    args = parser.parse_args()
    results = run(quick=args.quick)
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
