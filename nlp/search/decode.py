"""Pick the strategy the settings name; the one entry point for the Responder and evaluation."""

from __future__ import annotations

import torch
from torch import Tensor

from config import DecodingSettings
from nlp.search.beam import beam_search
from nlp.search.greedy import greedy_search
from nlp.search.hypothesis import Hypothesis
from nlp.search.mmi import ReverseModel, mmi_rerank
from nlp.search.rerank import RerankScoring, sample_and_rerank
from nlp.search.sampling import sample
from nlp.search.step import StepConstraints
from nlp.seq2seq import Seq2Seq


def decode(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    settings: DecodingSettings,
    reverse_model: ReverseModel | None = None,
    generator: torch.Generator | None = None,
    constraints: StepConstraints | None = None,
) -> list[Hypothesis]:
    """src: (batch, src_len), src_lengths: (batch,) -> one hypothesis per input row.

    `constraints`: what the vocabulary rules out (`nlp.search.vocab_rules`); None builds them
    from the settings alone. With a reverse model, beam search's n-best list (at least 5) is
    reranked by MMI-bidi, and `rerank` adds the MMI term to its score; `sample` ignores it.
    """
    if constraints is None:
        constraints = StepConstraints.from_settings(settings)
    if settings.strategy == "rerank":
        scoring = RerankScoring(
            settings.rerank_length_weight,
            reverse_model,
            settings.mmi_weight if reverse_model is not None else 0.0,
        )
        return sample_and_rerank(
            model,
            src,
            src_lengths,
            settings.max_length,
            settings.rerank_candidates,
            constraints,
            settings.temperature,
            settings.top_k,
            settings.top_p,
            generator,
            scoring,
        )
    if settings.strategy == "sample":
        return sample(
            model,
            src,
            src_lengths,
            settings.max_length,
            constraints,
            settings.temperature,
            settings.top_k,
            settings.top_p,
            generator,
        )
    if settings.strategy == "greedy" and reverse_model is None:
        return greedy_search(model, src, src_lengths, settings.max_length, constraints)
    beam = max(settings.beam_size, 5) if reverse_model is not None else settings.beam_size
    nbest = beam_search(
        model,
        src,
        src_lengths,
        settings.max_length,
        beam,
        constraints,
        settings.length_penalty,
        n_best=beam if reverse_model is not None else 1,
    )
    if reverse_model is None:
        return [hyps[0] for hyps in nbest]
    contexts = [
        row[:length] for row, length in zip(src.tolist(), src_lengths.tolist(), strict=True)
    ]
    return mmi_rerank(reverse_model, contexts, nbest, settings.mmi_weight)
