"""What every decoding strategy returns per input."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Hypothesis:
    tokens: list[int]  # generated ids, without <sos> and <eos>
    score: float  # sum of log-probabilities (the <eos> step included when it was produced)
    normalized_score: float = 0.0  # what beam search ranked by (length-penalised)
    attention: list[list[float]] = field(default_factory=list)  # (len(tokens), src_len) if kept


def strip_eos(ids: list[int], eos_id: int) -> tuple[list[int], bool]:
    """Tokens up to the first <eos>, and whether one was there."""
    if eos_id in ids:
        return ids[: ids.index(eos_id)], True
    return ids, False
