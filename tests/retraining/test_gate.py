"""The promotion gate: base perplexity within the tolerance AND better on the new pairs."""

from __future__ import annotations

import math

import pytest

from bot.retraining.gate import Scores, decide

ACTIVE = Scores(base_ppl=40.0, new_ppl=90.0)


def test_a_candidate_better_on_new_pairs_and_as_good_on_the_base_is_promoted() -> None:
    decision = decide(ACTIVE, Scores(base_ppl=40.0, new_ppl=60.0), tolerance=0.05)
    assert decision.promote
    assert decision.as_dict()["decision"] == "promoted"


def test_a_base_perplexity_within_the_tolerance_still_passes() -> None:
    assert decide(ACTIVE, Scores(base_ppl=41.99, new_ppl=60.0), tolerance=0.05).promote


def test_forgetting_the_base_corpus_beyond_the_tolerance_is_rejected() -> None:
    decision = decide(ACTIVE, Scores(base_ppl=42.01, new_ppl=10.0), tolerance=0.05)
    assert not decision.promote
    assert "exceeds the limit 42.000" in decision.reasons[0]


@pytest.mark.parametrize("new_ppl", [90.0, 95.0])
def test_no_improvement_on_the_new_pairs_is_rejected(new_ppl: float) -> None:
    decision = decide(ACTIVE, Scores(base_ppl=30.0, new_ppl=new_ppl), tolerance=0.05)
    assert not decision.promote
    assert "does not improve" in decision.reasons[1]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_diverged_candidate_never_passes_and_its_numbers_stay_json_safe(bad: float) -> None:
    decision = decide(ACTIVE, Scores(base_ppl=bad, new_ppl=bad), tolerance=10.0)
    assert not decision.promote
    assert decision.as_dict()["candidate"] == {"base_ppl": None, "new_ppl": None}


def test_the_decision_records_both_sets_of_numbers_and_the_limit() -> None:
    recorded = decide(ACTIVE, Scores(base_ppl=39.0, new_ppl=50.0), tolerance=0.1).as_dict()
    assert recorded["active"] == {"base_ppl": 40.0, "new_ppl": 90.0}
    assert recorded["candidate"] == {"base_ppl": 39.0, "new_ppl": 50.0}
    assert recorded["base_ppl_limit"] == 44.0 and recorded["tolerance"] == 0.1
    assert len(recorded["reasons"]) == 2
