"""Sample-and-rerank (the DialoGPT recipe, Zhang et al. 2020): draw N replies per context by
sampling, keep the one that scores best.

score = log p(reply | context) / steps + length_weight * len(reply)
        [+ mmi_weight * log p(context | reply), with a reverse model (MMI, Li et al. 2016)]

Sampling gives variety, the forward score keeps sense, and the reverse model punishes replies that
would fit any context. All contexts x N candidates are drawn in one batched sampling run (each
context encoded once, its encoding expanded N times), so the draws come from the caller's generator
in a fixed order: the same seed gives the same replies, and N = 1 without a reverse model is plain
sampling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nlp.search.hypothesis import Hypothesis
from nlp.search.mmi import ReverseModel, sequence_log_probs
from nlp.search.sampling import sample
from nlp.search.step import StepConstraints
from nlp.seq2seq import Seq2Seq


@dataclass(frozen=True)
class RerankScoring:
    length_weight: float = 0.0  # added per reply token: > 0 favours longer replies
    reverse: ReverseModel | None = None  # p(context | reply); None: forward score only
    mmi_weight: float = 0.0  # weight of log p(context | reply)


@torch.inference_mode()
def sample_and_rerank(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    max_length: int,
    candidates: int,
    constraints: StepConstraints = StepConstraints(),
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    scoring: RerankScoring = RerankScoring(),
) -> list[Hypothesis]:
    """src: (batch, src_len), src_lengths: (batch,) -> per row the best of `candidates` sampled
    replies; its `normalized_score` is the rerank score, `score` its forward log-probability."""
    if candidates < 1:
        raise ValueError(f"rerank needs at least one candidate, got {candidates}")
    batch = src.size(0)
    drawn = sample(
        model,
        src,
        src_lengths,
        max_length,
        constraints,
        temperature,
        top_k,
        top_p,
        generator,
        copies=candidates,
    )
    per_context = [drawn[i * candidates : (i + 1) * candidates] for i in range(batch)]
    contexts = [row[:n] for row, n in zip(src.tolist(), src_lengths.tolist(), strict=True)]
    scores = rerank_scores(per_context, contexts, max_length, scoring)
    best = []
    for hyps, row_scores in zip(per_context, scores, strict=True):
        j = max(range(len(hyps)), key=lambda k: row_scores[k])  # the first of equals
        best.append(dataclasses.replace(hyps[j], normalized_score=row_scores[j]))
    return best


def rerank_scores(
    candidates: Sequence[Sequence[Hypothesis]],
    contexts: Sequence[list[int]],
    max_length: int,
    scoring: RerankScoring,
) -> list[list[float]]:
    """The score of every candidate of every context (see the module docstring); an empty reply
    scores -inf (the reverse model cannot read one, and it is never a wanted reply).

    A candidate's forward score covers its tokens and the <eos> step, which it lacks only when
    it ran out of room (`max_length` tokens), so it is averaged over that many steps.
    """
    flat = [(i, h) for i, hyps in enumerate(candidates) for h in hyps]
    backward = [0.0] * len(flat)
    if scoring.reverse is not None and scoring.mmi_weight != 0.0:
        reverse = scoring.reverse
        scorable = [k for k, (_, h) in enumerate(flat) if h.tokens]
        if scorable:
            values = sequence_log_probs(
                reverse.model,
                [reverse.remap(flat[k][1].tokens) for k in scorable],
                [reverse.remap(contexts[flat[k][0]]) for k in scorable],
            )
            for k, value in zip(scorable, values, strict=True):
                backward[k] = value
    scores: list[list[float]] = [[] for _ in candidates]
    for (i, hyp), back in zip(flat, backward, strict=True):
        n = len(hyp.tokens)
        if n == 0:
            scores[i].append(float("-inf"))
            continue
        steps = min(n + 1, max_length)
        scores[i].append(hyp.score / steps + scoring.length_weight * n + scoring.mmi_weight * back)
    return scores
