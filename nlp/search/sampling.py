"""Sampling with temperature, top-k and nucleus (top-p) filtering, batched like greedy.

A draw looks only at the tokens the filters keep. Top-p keeps few of a large vocabulary, so the
nucleus is looked for among each row's 64 most likely tokens (`topk`), and only the rows those do
not cover are sorted whole; the draw is among the kept tokens. Measured on the default model
(8,000 words, 512 rows at temperature 0.8, top-p 0.9): 16 % of rows need more than 64 tokens,
0.5 % more than 1,024, and sorting every row whole took half of a sampling step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nlp.search.greedy import token_by_token
from nlp.search.hypothesis import Hypothesis
from nlp.search.step import StepConstraints
from nlp.seq2seq import Seq2Seq

_PREFIX = 64  # tokens per row looked at first for the nucleus


def candidates(log_probs: Tensor, top_k: int = 0, top_p: float = 1.0) -> tuple[Tensor, Tensor]:
    """log_probs: (N, vocab) -> log-probs and ids (N, k) of the tokens that top-k and top-p keep,
    best first; a column a row does not keep holds -inf. Top-p keeps the smallest set whose
    probability (after top-k) reaches p: a token goes when the tokens before it already reach p."""
    vocab = log_probs.size(-1)
    limit = min(top_k, vocab) if top_k > 0 else vocab
    if top_p >= 1.0:
        return log_probs.topk(limit, dim=-1)
    if limit < vocab:  # top-k first: the nucleus is taken within those k
        values, ids = log_probs.topk(limit, dim=-1)
        normaliser = values.logsumexp(dim=-1, keepdim=True)
    else:
        normaliser = log_probs.logsumexp(dim=-1, keepdim=True)
        values, ids = _nucleus_prefix(log_probs, normaliser, top_p)
    probs = (values - normaliser).exp()
    drop = (probs.cumsum(dim=-1) - probs) >= top_p
    return values.masked_fill(drop, float("-inf")), ids


def _nucleus_prefix(log_probs: Tensor, normaliser: Tensor, top_p: float) -> tuple[Tensor, Tensor]:
    """log_probs: (N, vocab), normaliser: (N, 1) -> each row's most likely tokens, best first,
    at least as many as reach `top_p` (N, width); columns past a row's own tokens hold -inf."""
    values, ids = log_probs.topk(min(_PREFIX, log_probs.size(-1)), dim=-1)
    short = (values - normaliser).exp().sum(dim=-1) < top_p  # (N,) rows the prefix misses
    if not bool(short.any()):
        return values, ids
    rows = short.nonzero().squeeze(1)
    sorted_values, order = log_probs.index_select(0, rows).sort(dim=-1, descending=True)
    probs = (sorted_values - normaliser.index_select(0, rows)).exp()
    width = max(values.size(1), int(((probs.cumsum(dim=-1) - probs) < top_p).sum(dim=-1).max()))
    out_values = log_probs.new_full((log_probs.size(0), width), float("-inf"))
    out_ids = ids.new_zeros((log_probs.size(0), width))
    out_values[:, : values.size(1)] = values
    out_ids[:, : ids.size(1)] = ids
    out_values[rows] = sorted_values[:, :width]
    out_ids[rows] = order[:, :width]
    return out_values, out_ids


def filter_logits(log_probs: Tensor, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """log_probs: (N, vocab) -> the same, -inf at every token top-k and top-p drop."""
    values, ids = candidates(log_probs, top_k, top_p)
    # amax: a padding column (-inf at id 0) must not overwrite a kept token 0.
    empty = torch.full_like(log_probs, float("-inf"))
    return empty.scatter_reduce(-1, ids, values, reduce="amax")


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
    copies: int = 1,
) -> list[Hypothesis]:
    """One draw per step from the temperature-scaled, top-k/top-p filtered distribution; scores
    are the unscaled log-probabilities of the drawn tokens. `copies`: that many draws per context,
    context by context (see `token_by_token`)."""

    def draw(log_probs: Tensor) -> Tensor:
        scaled = log_probs / temperature
        if top_k == 0 and top_p >= 1.0:
            return torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator).squeeze(1)
        values, ids = candidates(scaled, top_k, top_p)
        choice = torch.multinomial(values.softmax(dim=-1), 1, generator=generator)
        return ids.gather(1, choice).squeeze(1)

    return token_by_token(model, src, src_lengths, max_length, constraints, draw, copies=copies)
