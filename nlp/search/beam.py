"""Batched beam search with the GNMT length penalty (Wu et al. 2016).

All batch x beam rows advance in one decoder call per step. A hypothesis that produces <eos>
among the top `beam` candidates is finished and scored with the length penalty; the best
`beam` non-finished candidates carry on. An input is done once it has `beam` finished hypotheses.
"""

from __future__ import annotations

import torch
from torch import Tensor

from nlp.search.hypothesis import Hypothesis
from nlp.search.step import StepConstraints, Stepper
from nlp.seq2seq import Seq2Seq
from nlp.vocabulary import EOS_ID, SOS_ID


def length_penalty(length: int, alpha: float) -> float:
    """GNMT: ((5 + |Y|) / 6) ** alpha; alpha = 0 means plain log-probability."""
    return float(((5.0 + length) / 6.0) ** alpha)


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    max_length: int,
    beam_size: int,
    constraints: StepConstraints = StepConstraints(),
    alpha: float = 0.0,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """src: (batch, src_len) -> for each input its `n_best` hypotheses, best first."""
    batch, k = src.size(0), beam_size
    device = src.device
    memory, hidden = model.encode(src, src_lengths)
    rows = torch.arange(batch, device=device).repeat_interleave(k)
    step = Stepper(model, memory.index_select(rows), hidden, constraints, max_length=max_length)
    step.reorder(rows)

    history = torch.full((batch * k, 1), SOS_ID, dtype=torch.long, device=device)
    # Only the first beam of each input is live at the start, so the k beams don't all copy it.
    beam_scores = torch.full((batch, k), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch
    batch_offsets = (torch.arange(batch, device=device) * k).unsqueeze(1)

    for t in range(max_length):
        log_probs = step(history)  # (batch * k, vocab)
        vocab = log_probs.size(-1)
        candidates = (beam_scores.view(-1, 1) + log_probs).view(batch, k * vocab)
        top_scores, top_ids = candidates.topk(2 * k, dim=-1)  # (batch, 2k)
        top_beams, top_tokens = top_ids // vocab, top_ids % vocab
        is_eos = top_tokens.eq(EOS_ID)

        _collect_finished(finished, done, history, top_scores, top_beams, is_eos, k, alpha)

        # The k best candidates that do not end here continue.
        alive_scores = top_scores.masked_fill(is_eos, float("-inf"))
        alive_scores, pick = alive_scores.topk(k, dim=-1)  # (batch, k)
        source_rows = (batch_offsets + top_beams.gather(1, pick)).view(-1)
        tokens = top_tokens.gather(1, pick).view(-1, 1)
        history = torch.cat([history.index_select(0, source_rows), tokens], dim=1)
        step.reorder(source_rows)
        beam_scores = alive_scores
        for b in range(batch):
            if len(finished[b]) >= k:
                done[b] = True
        if all(done):
            break
        if t == max_length - 1:  # out of room: the live beams count as they are
            for b in range(batch):
                for j in range(k):
                    score = float(beam_scores[b, j])
                    if not done[b] and score > float("-inf"):
                        tokens_j = history[b * k + j, 1:].tolist()
                        finished[b].append(
                            Hypothesis(
                                tokens_j, score, score / length_penalty(len(tokens_j), alpha)
                            )
                        )
    return [sorted(h, key=lambda x: -x.normalized_score)[:n_best] for h in finished]


def _collect_finished(
    finished: list[list[Hypothesis]],
    done: list[bool],
    history: Tensor,
    top_scores: Tensor,
    top_beams: Tensor,
    is_eos: Tensor,
    k: int,
    alpha: float,
) -> None:
    """An <eos> among an input's top k candidates ends that hypothesis."""
    eos_rank_ok = is_eos.clone()
    eos_rank_ok[:, k:] = False
    for b, j in eos_rank_ok.nonzero().tolist():
        score = float(top_scores[b, j])
        if done[b] or score == float("-inf"):
            continue
        tokens = history[b * k + int(top_beams[b, j]), 1:].tolist()
        finished[b].append(Hypothesis(tokens, score, score / length_penalty(len(tokens), alpha)))
