"""MMI-bidi reranking (Li et al. 2016, "A Diversity-Promoting Objective for Neural Conversation
Models"): rescore the n-best list by log p(reply | context) + lambda * log p(context | reply).

Generic replies ("i don't know") are likely after any context, so the reverse model, which must
predict the context from the reply, gives them a low score; specific replies win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nlp.checkpoint import load_checkpoint
from nlp.datasets import EncodedPair, collate
from nlp.errors import CheckpointError
from nlp.search.hypothesis import Hypothesis
from nlp.seq2seq import Seq2Seq
from nlp.vocabulary import UNK_ID, Vocabulary


@dataclass
class ReverseModel:
    """p(context | reply), with a map from the forward vocabulary's ids to its own."""

    model: Seq2Seq
    id_map: list[int]

    @classmethod
    def load(cls, directory: Path, forward_vocab: Vocabulary, device: torch.device) -> ReverseModel:
        """The reverse model in `directory`; `CheckpointError` when its recipe says it is not
        one (a forward model would score p(reply | context) twice and rerank nothing)."""
        checkpoint = load_checkpoint(directory, device)
        if checkpoint.recipe.direction != "reverse":
            raise CheckpointError(
                f"{directory} is a {checkpoint.recipe.direction} model; MMI needs a reverse "
                "model (trained with chatbot train --reverse)"
            )
        stoi = checkpoint.vocab.stoi
        return cls(checkpoint.model, [stoi.get(tok, UNK_ID) for tok in forward_vocab.itos])

    def remap(self, ids: Sequence[int]) -> list[int]:
        return [self.id_map[i] for i in ids]


@torch.inference_mode()
def sequence_log_probs(
    model: Seq2Seq, sources: Sequence[list[int]], targets: Sequence[list[int]]
) -> list[float]:
    """Teacher-forced sum of log p(target + <eos> | source), for many pairs in one batch."""
    device = next(model.parameters()).device
    pairs = [EncodedPair(list(s), list(t)) for s, t in zip(sources, targets, strict=True)]
    batch = collate(pairs).to(device)
    logits = model(batch.src, batch.src_lengths, batch.trg_in).float()
    log_probs = logits.log_softmax(dim=-1).gather(2, batch.trg_out.unsqueeze(2)).squeeze(2)
    mask = batch.trg_out.ne(0)
    sums: list[float] = (log_probs * mask).sum(dim=1).tolist()
    return sums


def mmi_rerank(
    reverse: ReverseModel,
    contexts: Sequence[list[int]],
    nbest: Sequence[Sequence[Hypothesis]],
    weight: float,
) -> list[Hypothesis]:
    """The best hypothesis per context after adding weight * log p(context | reply)."""
    flat = [(i, h) for i, hyps in enumerate(nbest) for h in hyps if h.tokens]
    if not flat:
        return [hyps[0] for hyps in nbest]
    backward = sequence_log_probs(
        reverse.model,
        [reverse.remap(h.tokens) for _, h in flat],
        [reverse.remap(contexts[i]) for i, _ in flat],
    )
    best: dict[int, tuple[float, Hypothesis]] = {}
    for (i, hyp), back in zip(flat, backward, strict=True):
        score = hyp.normalized_score + weight * back
        if i not in best or score > best[i][0]:
            best[i] = (score, hyp)
    return [best[i][1] if i in best else hyps[0] for i, hyps in enumerate(nbest)]
