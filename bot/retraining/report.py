"""Retraining results as short texts for people: the admins' Telegram message, `/status`."""

from __future__ import annotations

from bot.retraining.job import RetrainOutcome
from bot.retraining.runs import RunMetrics
from storage.training_runs import RunInfo


def outcome_text(outcome: RetrainOutcome) -> str:
    """What admins read when a run ends: the decision and the numbers behind it."""
    m = outcome.metrics
    head = {
        "promoted": f"Retraining run {outcome.run_id}: promoted {outcome.candidate_version} "
        f"(now active; was {outcome.parent_version}).",
        "rejected": f"Retraining run {outcome.run_id}: candidate rejected; "
        f"{outcome.active_version} stays active.",
        "failed": f"Retraining run {outcome.run_id} failed: {outcome.error}. "
        f"{outcome.active_version} stays active.",
    }[outcome.status]
    lines = [head]
    if m.pairs is not None:
        p = m.pairs
        lines.append(
            f"Pairs: {p.new} new ({_kinds(p.kinds)}), {_count(p.heldout)} held out, "
            f"{_count(p.base_sample)} from the base corpus; "
            f"dropped: {_kinds(p.dropped) or 'none'}."
        )
    if m.candidate is not None and m.active is not None:
        lines.append(
            f"Base perplexity: {_num(m.candidate.base_ppl)} vs {_num(m.active.base_ppl)} active "
            f"(limit {_num(m.base_ppl_limit)})."
        )
        lines.append(
            f"New-pair perplexity: {_num(m.candidate.new_ppl)} vs {_num(m.active.new_ppl)} active."
        )
    if m.training is not None:
        lines.append(
            f"Training: {m.training.epochs} epochs, {m.training.steps} steps, "
            f"{m.words_added or 0} new words, {outcome.seconds / 60:.1f} min in all."
        )
    return "\n".join(lines)


def skipped_text(reason: str) -> str:
    return f"Scheduled retraining skipped: {reason}."


def run_text(run: RunInfo | None) -> str:
    """One line about a run, for `/status`."""
    if run is None:
        return "none"
    when = f"started {run.started_at:%Y-%m-%d %H:%M} UTC"
    if run.status == "running":
        return f"run {run.id} running ({when})"
    if run.status == "failed":
        return f"run {run.id} failed ({when}): {run.error}"
    metrics = RunMetrics.from_stored(run.metrics)
    decision = (metrics.decision if metrics else None) or "finished"
    numbers = ""
    if metrics and metrics.candidate is not None and metrics.active is not None:
        numbers = (
            f"; base ppl {_num(metrics.candidate.base_ppl)} vs {_num(metrics.active.base_ppl)}, "
            f"new-pair ppl {_num(metrics.candidate.new_ppl)} vs {_num(metrics.active.new_ppl)}"
        )
    return f"run {run.id} {decision} ({when}, {run.new_pairs or 0} new pairs{numbers})"


def _kinds(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()) if n)


def _count(n: int | None) -> str:
    return "?" if n is None else str(n)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"
