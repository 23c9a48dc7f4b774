"""Retraining results as short texts for people: the admins' Telegram message, `/status`."""

from __future__ import annotations

from typing import Any

from bot.retraining.job import RetrainOutcome
from storage.training_runs import RunInfo


def outcome_text(outcome: RetrainOutcome) -> str:
    """What admins read when a run ends: the decision and the numbers behind it."""
    m = outcome.metrics
    pairs = m.get("pairs", {})
    head = {
        "promoted": f"Retraining run {outcome.run_id}: promoted {outcome.candidate_version} "
        f"(now active; was {outcome.parent_version}).",
        "rejected": f"Retraining run {outcome.run_id}: candidate rejected; "
        f"{outcome.active_version} stays active.",
        "failed": f"Retraining run {outcome.run_id} failed: {outcome.error}. "
        f"{outcome.active_version} stays active.",
    }[outcome.status]
    lines = [head]
    if pairs:
        lines.append(
            f"Pairs: {pairs.get('new', 0)} new ({_kinds(pairs.get('kinds', {}))}), "
            f"{pairs.get('heldout', '?')} held out, {pairs.get('base_sample', '?')} from the base "
            f"corpus; dropped: {_kinds(pairs.get('dropped', {})) or 'none'}."
        )
    if "candidate" in m and "active" in m:
        lines.append(
            f"Base perplexity: {_num(m['candidate']['base_ppl'])} vs "
            f"{_num(m['active']['base_ppl'])} active (limit {_num(m.get('base_ppl_limit'))})."
        )
        lines.append(
            f"New-pair perplexity: {_num(m['candidate']['new_ppl'])} vs "
            f"{_num(m['active']['new_ppl'])} active."
        )
    if "training" in m:
        t = m["training"]
        lines.append(
            f"Training: {t.get('epochs')} epochs, {t.get('steps')} steps, "
            f"{m.get('words_added', 0)} new words, {outcome.seconds / 60:.1f} min in all."
        )
    return "\n".join(lines)


def skipped_text(reason: str) -> str:
    return f"Scheduled retraining skipped: {reason}."


def run_text(run: RunInfo | None) -> str:
    """One line about a run, for `/status`."""
    if run is None:
        return "none"
    when = f"started {run.started_at:%Y-%m-%d %H:%M} UTC"
    metrics = run.metrics or {}
    if run.status == "running":
        return f"run {run.id} running ({when})"
    if run.status == "failed":
        return f"run {run.id} failed ({when}): {run.error}"
    decision = metrics.get("decision", "finished")
    numbers = ""
    if "candidate" in metrics and "active" in metrics:
        numbers = (
            f"; base ppl {_num(metrics['candidate']['base_ppl'])} vs "
            f"{_num(metrics['active']['base_ppl'])}, new-pair ppl "
            f"{_num(metrics['candidate']['new_ppl'])} vs {_num(metrics['active']['new_ppl'])}"
        )
    return f"run {run.id} {decision} ({when}, {run.new_pairs or 0} new pairs{numbers})"


def _kinds(counts: dict[str, Any]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()) if n)


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.3f}"
