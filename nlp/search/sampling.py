"""Sampling with temperature, top-k and nucleus (top-p) filtering, batched like greedy."""

from __future__ import annotations

import torch
from torch import Tensor

from nlp.search.greedy import token_by_token
from nlp.search.hypothesis import Hypothesis
from nlp.search.step import StepConstraints
from nlp.seq2seq import Seq2Seq


def filter_logits(log_probs: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Keep the k most likely tokens and the smallest set whose probability reaches p."""
    if top_k > 0:
        kth = log_probs.topk(min(top_k, log_probs.size(-1)), dim=-1).values[:, -1:]
        log_probs = log_probs.masked_fill(log_probs < kth, float("-inf"))
    if top_p < 1.0:
        sorted_lp, order = log_probs.sort(dim=-1, descending=True)
        cumulative = sorted_lp.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach p (the top token always stays).
        drop = (cumulative - sorted_lp.softmax(dim=-1)) >= top_p
        log_probs = log_probs.scatter(-1, order, sorted_lp.masked_fill(drop, float("-inf")))
    return log_probs


@torch.inference_mode()
def sample(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    max_length: int,
    constraints: StepConstraints = StepConstraints(),
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[Hypothesis]:
    """One draw per step from the temperature-scaled, top-k/top-p filtered distribution; scores
    are the unscaled log-probabilities of the drawn tokens."""

    def draw(log_probs: Tensor) -> Tensor:
        filtered = filter_logits(log_probs / temperature, top_k, top_p)
        return torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator).squeeze(1)

    return token_by_token(model, src, src_lengths, max_length, constraints, draw)
