"""Greedy decoding, batched: each row stops at its own <eos>; the batch stops when all have.

`token_by_token` is the loop greedy and sampling share; they differ only in how a token is chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nlp.search.hypothesis import Hypothesis, strip_eos
from nlp.search.step import StepConstraints, Stepper
from nlp.seq2seq import Seq2Seq
from nlp.vocabulary import EOS_ID, PAD_ID, SOS_ID

Chooser = Callable[[Tensor], Tensor]  # log-probs (N, vocab) -> next token ids (N,)


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    max_length: int,
    constraints: StepConstraints = StepConstraints(),
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """src: (batch, src_len) -> one hypothesis per row: the most likely token at every step."""
    return token_by_token(
        model, src, src_lengths, max_length, constraints, _most_likely, keep_attention
    )


def _most_likely(log_probs: Tensor) -> Tensor:
    return log_probs.argmax(dim=-1)


def token_by_token(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    max_length: int,
    constraints: StepConstraints,
    choose: Chooser,
    keep_attention: bool = False,
) -> list[Hypothesis]:
    """One token per row and step, picked by `choose` (greedy: argmax; sampling: a draw), until
    every row has produced <eos>; a finished row only pads and no longer adds to its score."""
    memory, hidden = model.encode(src, src_lengths)
    step = Stepper(model, memory, hidden, constraints, keep_attention, max_length)
    batch = src.size(0)
    history = torch.full((batch, 1), SOS_ID, dtype=torch.long, device=src.device)
    scores = torch.zeros(batch, device=src.device)
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    attention: list[Tensor] = []
    for _ in range(max_length):
        log_probs = step(history)
        token = choose(log_probs)
        scores += log_probs.gather(1, token.unsqueeze(1)).squeeze(1).masked_fill(finished, 0.0)
        token = token.masked_fill(finished, PAD_ID)
        history = torch.cat([history, token.unsqueeze(1)], dim=1)
        if keep_attention and step.last_attention is not None:
            attention.append(step.last_attention)
        finished |= token.eq(EOS_ID)
        if bool(finished.all()):
            break
    return _hypotheses(history[:, 1:].tolist(), scores.tolist(), attention)


def _hypotheses(
    rows: list[list[int]], scores: list[float], attention: list[Tensor]
) -> list[Hypothesis]:
    weights = torch.stack(attention, dim=1).tolist() if attention else None  # (batch, steps, src)
    out = []
    for i, (ids, score) in enumerate(zip(rows, scores, strict=True)):
        tokens, _ = strip_eos([t for t in ids if t != PAD_ID], EOS_ID)
        out.append(Hypothesis(tokens, score, score, weights[i][: len(tokens)] if weights else []))
    return out
