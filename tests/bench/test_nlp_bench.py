"""The bench's alternating measurement: who runs when, and what it reports."""

import pytest

from bench.nlp_bench import _Side, alternate, round_ratios, spread


def _recording_side(name: str, log: list[str], tokens: int = 10) -> _Side:
    def step(batch: int) -> tuple[float, int]:
        log.append(f"{name}{batch}")
        return 0.0, tokens

    return _Side(name, step, list(range(100)))


def test_sides_alternate_in_blocks_and_take_turns_going_first() -> None:
    log: list[str] = []
    ref, ours = _recording_side("R", log), _recording_side("O", log)
    alternate([ref, ours], rounds=3, block=2)
    assert log == ["R0", "R1", "O0", "O1", "O2", "O3", "R2", "R3", "R4", "R5", "O4", "O5"]
    assert ref.block_steps == ours.block_steps == [2, 2, 2]
    assert ref.block_tokens == [20, 20, 20]


def test_each_side_takes_its_own_batches_in_order_and_stops_at_the_end() -> None:
    log: list[int] = []

    def step(batch: int) -> tuple[float, int]:
        log.append(batch)
        return 0.0, 1

    side = _Side("S", step, [7, 8, 9])
    alternate([side], rounds=2, block=2)
    assert log == [7, 8, 9]
    assert side.block_steps == [2, 1] and side.taken == 3


def test_work_after_a_block_is_not_timed() -> None:
    log: list[str] = []
    ref, ours = _recording_side("R", log), _recording_side("O", log)
    seen: list[str] = []
    alternate([ref, ours], rounds=2, block=1, after_block=lambda side: seen.append(side.name))
    assert seen == ["R", "O", "O", "R"]
    assert len(ref.block_seconds) == len(ours.block_seconds) == 2


def test_ratios_pair_the_blocks_of_one_round() -> None:
    ref, ours = _Side("R", lambda b: (0.0, 1), []), _Side("O", lambda b: (0.0, 1), [])
    ref.block_tokens, ref.block_seconds = [100, 100], [1.0, 2.0]
    ours.block_tokens, ours.block_seconds = [300, 300], [1.0, 2.0]
    assert round_ratios(ours, ref) == pytest.approx([3.0, 3.0])
    assert ours.rates() == pytest.approx([300.0, 150.0])


def test_spread_reports_median_quartiles_and_extremes() -> None:
    s = spread([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s == {"median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 5.0, "n": 5}
    assert spread([2.5])["median"] == spread([2.5])["q3"] == 2.5
