"""Reply-quality metrics beyond perplexity: diversity, genericness, length, BLEU."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import sacrebleu


def distinct_n(replies: Sequence[Sequence[str]], n: int) -> float:
    """Distinct n-grams / all n-grams over every reply (Li et al. 2016)."""
    ngrams = [tuple(r[i : i + n]) for r in replies for i in range(len(r) - n + 1)]
    return len(set(ngrams)) / len(ngrams) if ngrams else 0.0


def generic_reply_rate(replies: Sequence[str], top: int = 10) -> float:
    """Share of replies that are one of the `top` most frequent replies."""
    if not replies:
        return 0.0
    common = {reply for reply, _ in Counter(replies).most_common(top)}
    return sum(reply in common for reply in replies) / len(replies)


def top_reply_share(replies: Sequence[str]) -> float:
    """Share of replies that are the single most frequent reply ("i don't know" x 20 %)."""
    if not replies:
        return 0.0
    return Counter(replies).most_common(1)[0][1] / len(replies)


def mean_length(replies: Sequence[Sequence[str]]) -> float:
    return sum(len(r) for r in replies) / len(replies) if replies else 0.0


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (sacrebleu) on already-tokenised, space-joined text."""
    if not hypotheses:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)], tokenize="none").score)


def reply_metrics(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[str]]
) -> dict[str, float]:
    joined = [" ".join(h) for h in hypotheses]
    return {
        "distinct_1": distinct_n(hypotheses, 1),
        "distinct_2": distinct_n(hypotheses, 2),
        "generic_reply_rate": generic_reply_rate(joined),
        "top_reply_share": top_reply_share(joined),
        "mean_reply_length": mean_length(hypotheses),
        "bleu": bleu(joined, [" ".join(r) for r in references]),
    }
