"""What became of a message, counted once: a fixed answer under the reason the dialogue service
gave it (carried on the `Answer`, whatever its wording), a generated reply not as a fixed one."""

from __future__ import annotations

import pytest

from bot.answers import FixedReason
from bot.dialogue import Answer
from bot.observability import metrics, outcomes


def _fixed_answers(reason: str) -> float:
    sample = metrics.REGISTRY.get_sample_value("chatbot_fixed_answers_total", {"reason": reason})
    return sample or 0.0


# The labels dashboards and alerts already read: a reason's label must not change.
LABELS = {
    FixedReason.EMPTY: "empty",
    FixedReason.TOO_LONG: "too_long",
    FixedReason.NO_WORDS: "no_words",
    FixedReason.UNKNOWN_WORDS: "unknown_words",
    FixedReason.MODEL_ERROR: "model_error",
}


@pytest.mark.parametrize("reason", list(FixedReason))
def test_a_fixed_answer_is_counted_under_the_reason_it_carries(reason: FixedReason) -> None:
    before = {label: _fixed_answers(label) for label in LABELS.values()}

    outcomes.answered(Answer("whatever the wording", fixed_reason=reason))

    after = {label: _fixed_answers(label) for label in LABELS.values()}
    assert after == {label: n + (label == LABELS[reason]) for label, n in before.items()}


def test_a_generated_reply_is_not_counted_as_a_fixed_answer() -> None:
    before = {label: _fixed_answers(label) for label in LABELS.values()}

    outcomes.answered(Answer("Hi there!", fixed_reason=None, model_version="tiny"))

    assert {label: _fixed_answers(label) for label in LABELS.values()} == before
