"""The Telegram benchmark: its arithmetic, and a quick run of the real thing (replicas on
PostgreSQL, a tiny model) that must measure what it says and find every message answered once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import telegram_bench
from bench.telegram_replica import DECODE, Meter, Snapshot, Snapshots


def _snapshot(number: int, cpu: float, decode: float, db: dict[str, float]) -> Snapshot:
    return Snapshot(
        number=number,
        cpu_s=cpu,
        decode_cpu_s=decode,
        decodes=number,
        decoded_contexts=number,
        db_cpu_s=db,
        db_calls={name: number * 2 for name in db},
    )


def test_database_cpu_is_the_difference_of_the_snapshots_per_reply_biggest_first() -> None:
    started = [_snapshot(1, 1.0, 0.5, {"storage.inbox.store": 0.1})]
    ended = [_snapshot(3, 2.0, 0.9, {"storage.inbox.store": 0.3, "bot.dialogue._save": 0.5})]
    per_reply = telegram_bench._database_cpu(started, ended, replies=100)
    assert list(per_reply) == ["dialogue._save", "inbox.store"]
    assert per_reply["inbox.store"] == {"ms": 2.0, "calls": 0.04}
    assert per_reply["dialogue._save"] == {"ms": 5.0, "calls": 0.06}


def test_percentile_takes_the_nearest_rank() -> None:
    ordered = [float(i) for i in range(1, 101)]
    assert telegram_bench._percentile(ordered, 50) == 50.0
    assert telegram_bench._percentile(ordered, 95) == 95.0
    assert telegram_bench._percentile([7.0], 95) == 7.0


def test_a_snapshot_is_written_whole_and_reads_back(tmp_path: Path) -> None:
    decodes, database = Meter(), Meter()
    decodes.add(DECODE, 0.25, items=8)
    database.add("storage.inbox.store", 0.01)
    snapshots = Snapshots(tmp_path / "stats.json", decodes, database, profile=None)
    snapshots.write()
    read = Snapshot.read(tmp_path / "stats.json")
    assert (read.decode_cpu_s, read.decodes, read.decoded_contexts) == (0.25, 1, 8)
    assert read.db_cpu_s == {"storage.inbox.store": 0.01} and read.cpu_s > 0
    assert json.loads((tmp_path / "stats.json").read_text())["number"] == 0


@pytest.mark.slow
def test_a_quick_run_measures_one_and_two_replicas_and_answers_everything_once(
    tiny_model_dir: Path,
) -> None:
    results = telegram_bench.run(tiny_model_dir, quick=True)
    if "skipped" in results:
        pytest.skip(results["skipped"])
    for setup in telegram_bench.SETUPS:
        measured = results[setup.name]
        assert measured["lost"] == measured["duplicated"] == 0
        expected = telegram_bench.QUICK_CHATS * telegram_bench.QUICK_MESSAGES
        assert measured["replies_sent"] == measured["stored_turns"] == expected
        assert measured["replies_with_telegram_id"] == expected
        assert 0 < measured["decode_cpu_ms_per_reply"] < measured["cpu_ms_per_reply"]
        assert measured["cpu_outside_decode_ms_per_reply"] == pytest.approx(
            measured["cpu_ms_per_reply"] - measured["decode_cpu_ms_per_reply"], abs=0.02
        )
        assert "inbox.store" in measured["database_cpu_ms_per_reply"]
    assert results["passed"]["exactly_once"]
    assert results["two_vs_one"] > 0
