"""The shipped model: it loads, stays small, and still scores what its metrics.json records."""

import json
from pathlib import Path

import pytest

from config import REPO_ROOT
from nlp.evaluation import evaluate_checkpoint
from nlp.responder import Responder

DEFAULT = REPO_ROOT / "models" / "default"


def test_shipped_model_loads_and_answers() -> None:
    replies = Responder(DEFAULT).reply(["hello", "how are you?", "what do you do for fun?"])
    assert all(isinstance(r, str) and r for r in replies)


def test_shipped_model_is_at_most_30_mb() -> None:
    assert sum(f.stat().st_size for f in DEFAULT.iterdir() if f.is_file()) <= 30 * 2**20


@pytest.mark.slow  # evaluates the whole test split
def test_shipped_model_reproduces_its_recorded_test_metrics() -> None:
    recorded = json.loads((DEFAULT / "metrics.json").read_text())["test@500"]
    measured = evaluate_checkpoint(Path(DEFAULT), "test", limit=500)
    assert measured["pairs"] == recorded["pairs"] == 500
    assert measured["perplexity"] == pytest.approx(recorded["perplexity"], rel=1e-3)
    # Greedy replies can flip on near-ties between CPU instruction sets: small slack.
    assert measured["bleu"] == pytest.approx(recorded["bleu"], abs=0.5)
    for key in ("distinct_1", "distinct_2", "generic_reply_rate"):
        assert measured[key] == pytest.approx(recorded[key], abs=0.01)
    assert measured["mean_reply_length"] == pytest.approx(recorded["mean_reply_length"], abs=0.1)
