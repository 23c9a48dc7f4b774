"""Greedy decoding, batched: each row stops at its own <eos>; the batch stops when all have.

`token_by_token` is the loop greedy and sampling share; they differ only in how a token is chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from nlp.search.hypothesis import Hypothesis, strip_eos
from nlp.search.step import StepConstraints, Stepper
from nlp.seq2seq import Seq2Seq, select_hidden
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
    copies: int = 1,
) -> list[Hypothesis]:
    """One token per row and step, picked by `choose` (greedy: argmax; sampling: a draw), until
    every row has produced <eos>. A row that has leaves the decode (the decoder runs on the rest
    only: sampled batches have a long tail of rows still going); it only pads from there.

    `copies`: decode each context that many times, context by context (batch * copies rows):
    each is encoded once and its encoder memory and decoder state expanded (sample-and-rerank:
    the bidirectional encoder on N identical copies was most of its time)."""
    memory, hidden = model.encode(src, src_lengths)
    if copies > 1:
        rows = torch.arange(src.size(0), device=src.device).repeat_interleave(copies)
        memory, hidden = memory.index_select(rows), select_hidden(hidden, rows)
    step = Stepper(model, memory, hidden, constraints, keep_attention, max_length)
    batch, device = memory.keys.size(0), memory.keys.device
    history = torch.full((batch, 1), SOS_ID, dtype=torch.long, device=device)
    scores = torch.zeros(batch, device=device)
    active = torch.arange(batch, device=device)  # (A,) rows still decoding
    attention: list[Tensor] = []
    for _ in range(max_length):
        log_probs = step(history.index_select(0, active))  # (A, vocab)
        token = choose(log_probs)  # (A,)
        scores[active] += log_probs.gather(1, token.unsqueeze(1)).squeeze(1)
        column = torch.full((batch,), PAD_ID, dtype=torch.long, device=device)
        column[active] = token
        history = torch.cat([history, column.unsqueeze(1)], dim=1)
        if keep_attention and step.last_attention is not None:
            weights = step.last_attention.new_zeros(batch, step.last_attention.size(1))
            weights[active] = step.last_attention
            attention.append(weights)
        going = token.ne(EOS_ID)
        if not bool(going.any()):
            break
        if not bool(going.all()):
            keep = going.nonzero().squeeze(1)
            step.keep_rows(keep)
            active = active.index_select(0, keep)
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
