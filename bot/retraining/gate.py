"""The promotion gate: does a retrained candidate replace the active model?

Both models are scored on the same two held-out sets: the base corpus's validation split (has it
forgotten how to chat?) and a held-out slice of the new pairs (has it learnt from them?). The
candidate is promoted only if its base perplexity is at most `tolerance` (relative) worse than the
active model's AND its perplexity on the new pairs is lower. A candidate number that is not
finite (a diverged model) never passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scores:
    base_ppl: float  # perplexity on the base validation split
    new_ppl: float  # perplexity on the held-out new pairs

    def as_dict(self) -> dict[str, float | None]:
        return {"base_ppl": _finite(self.base_ppl), "new_ppl": _finite(self.new_ppl)}


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    reasons: tuple[str, ...]
    active: Scores
    candidate: Scores
    tolerance: float

    @property
    def base_limit(self) -> float:
        return self.active.base_ppl * (1.0 + self.tolerance)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decision": "promoted" if self.promote else "rejected",
            "reasons": list(self.reasons),
            "active": self.active.as_dict(),
            "candidate": self.candidate.as_dict(),
            "tolerance": self.tolerance,
            "base_ppl_limit": _finite(self.base_limit),
        }


def decide(active: Scores, candidate: Scores, tolerance: float) -> GateDecision:
    limit = active.base_ppl * (1.0 + tolerance)
    base_ok = _le(candidate.base_ppl, limit)
    new_ok = _lt(candidate.new_ppl, active.new_ppl)
    reasons = (
        f"base perplexity {candidate.base_ppl:.3f} "
        + ("within" if base_ok else "exceeds")
        + f" the limit {limit:.3f} (active {active.base_ppl:.3f} + {tolerance:.0%})",
        f"new-pair perplexity {candidate.new_ppl:.3f} "
        + ("improves on" if new_ok else "does not improve on")
        + f" the active model's {active.new_ppl:.3f}",
    )
    return GateDecision(base_ok and new_ok, reasons, active, candidate, tolerance)


def _le(a: float, b: float) -> bool:
    return math.isfinite(a) and a <= b  # False whenever b is NaN


def _lt(a: float, b: float) -> bool:
    return math.isfinite(a) and a < b


def _finite(x: float) -> float | None:
    """JSON columns (PostgreSQL's especially) take no NaN or infinity: those become null."""
    return round(x, 4) if math.isfinite(x) else None
