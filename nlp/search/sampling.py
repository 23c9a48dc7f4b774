"""Sampling with temperature, top-k and nucleus (top-p) filtering, batched like greedy."""

from __future__ import annotations

import torch
from torch import Tensor

from nlp.model import Seq2Seq
from nlp.search.hypothesis import Hypothesis, strip_eos
from nlp.search.step import StepConstraints, Stepper
from nlp.vocabulary import EOS_ID, PAD_ID, SOS_ID


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
    memory, hidden = model.encode(src, src_lengths)
    step = Stepper(model, memory, hidden, constraints)
    batch = src.size(0)
    history = torch.full((batch, 1), SOS_ID, dtype=torch.long, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    for _ in range(max_length):
        log_probs = step(history)
        filtered = filter_logits(log_probs / temperature, top_k, top_p)
        token = torch.multinomial(filtered.softmax(dim=-1), 1, generator=generator).squeeze(1)
        scores += log_probs.gather(1, token.unsqueeze(1)).squeeze(1).masked_fill(finished, 0.0)
        token = token.masked_fill(finished, PAD_ID)
        history = torch.cat([history, token.unsqueeze(1)], dim=1)
        finished |= token.eq(EOS_ID)
        if bool(finished.all()):
            break
    out = []
    for ids, score in zip(history[:, 1:].tolist(), scores.tolist(), strict=True):
        tokens, _ = strip_eos([t for t in ids if t != PAD_ID], EOS_ID)
        out.append(Hypothesis(tokens, score, score))
    return out
