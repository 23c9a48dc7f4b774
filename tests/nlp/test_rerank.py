from pathlib import Path

import pytest
import torch

from config import DecodingSettings, ModelSettings
from nlp.responder import Responder
from nlp.search import StepConstraints, sample
from nlp.search.hypothesis import Hypothesis
from nlp.search.rerank import (
    RerankScoring,
    rerank_scores,
    sample_and_rerank,
)
from nlp.seq2seq import Seq2Seq
from nlp.vocabulary import EOS_ID

VOCAB = 40


def _random_model(seed: int) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(ModelSettings(embedding_dim=16, hidden_size=16, num_layers=2), VOCAB).eval()


def _src() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    src = torch.randint(8, VOCAB, (3, 6))
    src[1, 3:] = 0
    return src, torch.tensor([6, 3, 6])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rerank_of_one_candidate_without_a_reverse_model_is_sampling(seed: int) -> None:
    model = _random_model(seed)
    constraints = StepConstraints(min_length=1, no_repeat_ngram=2)
    sampled = sample(
        model, *_src(), 12, constraints, 1.3, 0, 0.95, torch.Generator().manual_seed(seed)
    )
    reranked = sample_and_rerank(
        model, *_src(), 12, 1, constraints, 1.3, 0, 0.95, torch.Generator().manual_seed(seed)
    )
    assert [(h.tokens, h.score) for h in reranked] == [(h.tokens, h.score) for h in sampled]


def test_responder_rerank_of_one_equals_responder_sampling(
    tiny_model_dir: Path, tiny_pairs: list[tuple[str, str]]
) -> None:
    contexts = [c for c, _ in tiny_pairs] + ["something it never saw", "jazz tea cats"]
    settings = DecodingSettings(strategy="sample", temperature=1.5, top_p=1.0)
    sampled = Responder(tiny_model_dir, settings).generate(contexts)
    reranked = Responder(
        tiny_model_dir, settings.model_copy(update={"strategy": "rerank", "rerank_candidates": 1})
    ).generate(contexts)
    assert [(r.text, r.score) for r in reranked] == [(r.text, r.score) for r in sampled]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_candidates_from_one_encoding_equal_sampling_the_repeated_contexts(seed: int) -> None:
    """Encoding each context once and expanding it draws what encoding N copies drew."""
    model = _random_model(seed)
    src, lengths = _src()
    n, constraints = 6, StepConstraints(min_length=1, no_repeat_ngram=2)
    expanded = sample(
        model,
        src,
        lengths,
        12,
        constraints,
        1.3,
        0,
        0.95,
        torch.Generator().manual_seed(seed),
        copies=n,
    )
    repeated = sample(
        model,
        src.repeat_interleave(n, dim=0),
        lengths.repeat_interleave(n),
        12,
        constraints,
        1.3,
        0,
        0.95,
        torch.Generator().manual_seed(seed),
    )
    assert len({tuple(h.tokens) for h in expanded}) > n  # the draws differ: a real comparison
    assert [h.tokens for h in expanded] == [h.tokens for h in repeated]
    assert [h.score for h in expanded] == pytest.approx([h.score for h in repeated], abs=1e-5)


def test_rerank_is_reproducible_with_a_seeded_generator() -> None:
    model = _random_model(0)
    runs = [
        [
            h.tokens
            for h in sample_and_rerank(
                model, *_src(), 10, 8, temperature=1.5, generator=torch.Generator().manual_seed(3)
            )
        ]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_rerank_returns_the_best_scored_of_the_candidates_it_drew() -> None:
    model = _random_model(1)
    n, max_length = 8, 10
    scoring = RerankScoring(length_weight=0.3)
    best = sample_and_rerank(
        model,
        *_src(),
        max_length,
        n,
        temperature=1.5,
        generator=torch.Generator().manual_seed(4),
        scoring=scoring,
    )
    # The same draws: n copies of every context, one sampling run, the same seed. (Sampling the
    # repeated contexts draws the same tokens, but their encoder GEMMs of another shape may differ
    # in the last bits: the scores compare exactly only along the same path.)
    src, lengths = _src()
    drawn = sample(
        model,
        src,
        lengths,
        max_length,
        temperature=1.5,
        generator=torch.Generator().manual_seed(4),
        copies=n,
    )
    candidates = [drawn[i * n : (i + 1) * n] for i in range(3)]
    scores = rerank_scores(candidates, [[]] * 3, max_length, scoring)
    for hyp, hyps, row in zip(best, candidates, scores, strict=True):
        assert len({tuple(h.tokens) for h in hyps}) > 1  # there was a choice to make
        assert hyp.normalized_score == max(row)
        assert hyp.tokens == hyps[row.index(max(row))].tokens


def test_rerank_score_is_the_mean_log_prob_per_step_plus_the_length_term() -> None:
    long, short, empty = Hypothesis([5, 6, 7], -3.0), Hypothesis([5], -2.5), Hypothesis([], -0.1)
    (plain,) = rerank_scores([[long, short, empty]], [[9]], 20, RerankScoring())
    assert plain == [-3.0 / 4, -2.5 / 2, float("-inf")]  # <eos> is a step; empty never wins
    (cut,) = rerank_scores([[long]], [[9]], 3, RerankScoring())
    assert cut == [-3.0 / 3]  # out of room: no <eos> step was scored
    (weighted,) = rerank_scores([[long, short]], [[9]], 20, RerankScoring(length_weight=0.5))
    assert weighted == [-0.75 + 1.5, -1.25 + 0.5]


def test_rerank_keeps_min_length() -> None:
    model = _random_model(0)
    with torch.no_grad():
        model.decoder.output.bias[EOS_ID] = 100.0
    hyps = sample_and_rerank(
        model, *_src(), 10, 4, StepConstraints(min_length=3), generator=torch.Generator()
    )
    assert [len(h.tokens) for h in hyps] == [3, 3, 3]


def test_more_candidates_find_a_better_forward_score(
    tiny_model_dir: Path, tiny_pairs: list[tuple[str, str]]
) -> None:
    contexts = [c for c, _ in tiny_pairs]

    def mean_score(candidates: int) -> float:
        settings = DecodingSettings(
            strategy="rerank",
            rerank_candidates=candidates,
            rerank_length_weight=0.0,
            temperature=2.0,
            top_p=1.0,
        )
        replies = Responder(tiny_model_dir, settings).generate(contexts)
        return sum(r.score / (len(r.tokens) + 1) for r in replies) / len(replies)

    assert mean_score(16) > mean_score(1) + 0.1
