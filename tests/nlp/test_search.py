import itertools
from pathlib import Path

import pytest
import torch

from config import DecodingSettings, ModelSettings
from nlp.checkpoint import load_checkpoint
from nlp.search import StepConstraints, beam_search, greedy_search, sample
from nlp.search.rerank import sample_and_rerank
from nlp.search.sampling import filter_logits
from nlp.search.step import NEVER_GENERATED
from nlp.search.vocab_rules import VocabularyRules
from nlp.seq2seq import Seq2Seq
from nlp.text import TextProcessor
from nlp.vocabulary import EOS_ID, UNK_ID, Vocabulary

VOCAB = 40


def _random_model(seed: int) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(ModelSettings(embedding_dim=16, hidden_size=16, num_layers=2), VOCAB).eval()


def _src(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    src = torch.randint(8, VOCAB, (3, 6))
    src[1, 3:] = 0
    return src, torch.tensor([6, 3, 6])


def _bias(model: Seq2Seq, token: int, value: float = 100.0) -> None:
    with torch.no_grad():
        model.decoder.output.bias[token] = value


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("no_repeat", [0, 2])
def test_beam_of_one_equals_greedy(seed: int, no_repeat: int) -> None:
    model = _random_model(seed)
    src, lengths = _src(seed)
    constraints = StepConstraints(no_repeat_ngram=no_repeat)
    greedy = greedy_search(model, src, lengths, 12, constraints)
    beam = beam_search(model, src, lengths, 12, beam_size=1, constraints=constraints)
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beam]
    assert [round(g.score, 4) for g in greedy] == [round(b[0].score, 4) for b in beam]


def test_beam_of_one_equals_greedy_on_a_trained_model(tiny_model_dir: Path) -> None:
    checkpoint = load_checkpoint(tiny_model_dir)
    processor = TextProcessor(checkpoint.text_settings)
    for text in ["hello", "how are you?", "something it never saw"]:
        ids = torch.tensor([checkpoint.vocab.encode(processor.tokenize(text))])
        lengths = torch.tensor([ids.size(1)])
        greedy = greedy_search(checkpoint.model, ids, lengths, 20)[0]
        beam = beam_search(checkpoint.model, ids, lengths, 20, beam_size=1)[0][0]
        assert greedy.tokens == beam.tokens


def test_greedy_stops_at_eos() -> None:
    model = _random_model(0)
    _bias(model, EOS_ID)
    calls = 0
    forward = model.decoder.forward

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return forward(*args, **kwargs)

    model.decoder.forward = counting  # type: ignore[method-assign]
    hyps = greedy_search(model, *_src(), max_length=15)
    assert [h.tokens for h in hyps] == [[], [], []]
    assert calls == 1


def test_each_greedy_row_stops_at_its_own_eos(tiny_model_dir: Path, tiny_pairs: list) -> None:
    checkpoint = load_checkpoint(tiny_model_dir)
    processor = TextProcessor(checkpoint.text_settings)
    contexts = [c for c, _ in tiny_pairs[:6]]
    ids = [checkpoint.vocab.encode(processor.tokenize(c)) for c in contexts]
    src = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for i, row in enumerate(ids):
        src[i, : len(row)] = torch.tensor(row)
    hyps = greedy_search(checkpoint.model, src, torch.tensor([len(r) for r in ids]), 20)
    expected = [processor.tokenize(r) for _, r in tiny_pairs[:6]]
    assert [checkpoint.vocab.decode(h.tokens) for h in hyps] == expected
    assert len({len(e) for e in expected}) > 1  # rows really end at different steps


@pytest.mark.parametrize("token", NEVER_GENERATED)
def test_beam_search_never_produces_unk_or_other_specials(token: int) -> None:
    model = _random_model(3)
    _bias(model, token)
    for hyps in beam_search(model, *_src(), max_length=10, beam_size=4, n_best=4):
        for hyp in hyps:
            assert token not in hyp.tokens
    assert UNK_ID in NEVER_GENERATED


def test_min_length_delays_eos() -> None:
    model = _random_model(0)
    _bias(model, EOS_ID)
    hyps = greedy_search(model, *_src(), max_length=10, constraints=StepConstraints(min_length=3))
    assert all(len(h.tokens) == 3 for h in hyps)
    beams = beam_search(model, *_src(), 10, 3, StepConstraints(min_length=2))
    assert all(len(b[0].tokens) == 2 for b in beams)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_no_repeat_ngram_blocks_repeats(n: int) -> None:
    model = _random_model(0)
    _bias(model, 9, 50.0)  # token 9 is overwhelmingly likely at every step
    plain = greedy_search(model, *_src(), max_length=8)[0].tokens
    assert plain.count(9) > 2
    for hyps in (
        greedy_search(model, *_src(), 8, StepConstraints(no_repeat_ngram=n)),
        [b[0] for b in beam_search(model, *_src(), 8, 3, StepConstraints(no_repeat_ngram=n))],
    ):
        for hyp in hyps:
            grams = [tuple(hyp.tokens[i : i + n]) for i in range(len(hyp.tokens) - n + 1)]
            assert len(grams) == len(set(grams))


def _replies(model: Seq2Seq, constraints: StepConstraints) -> list[list[int]]:
    """Every strategy's replies, sample-and-rerank's too."""
    src, lengths = _src()
    reranked = sample_and_rerank(
        model, src, lengths, 10, 4, constraints, generator=torch.Generator().manual_seed(0)
    )
    by_strategy = _all_strategies(model, 10, constraints)
    return [*itertools.chain(*by_strategy.values()), *(h.tokens for h in reranked)]


def test_no_repeat_words_stops_word_loops_in_every_strategy() -> None:
    model = _random_model(0)
    _bias(model, 9, 50.0)  # token 9 ("pizza") is overwhelmingly likely at every step
    _bias(model, 10, 45.0)  # and token 10 ("just") next
    plain = _replies(model, StepConstraints(min_length=6))
    assert all(any(a == b for a, b in itertools.pairwise(r)) for r in plain)  # "pizza pizza"
    assert all(r.count(9) > 1 for r in plain)
    no_loops = StepConstraints(min_length=6, no_immediate_repeat=True, once_ids=(9,))
    for reply in _replies(model, no_loops):
        assert not any(a == b for a, b in itertools.pairwise(reply)), reply
        assert reply.count(9) == 1, reply  # a content word once; a stop word more often:
        assert reply.count(10) > 1, reply


def test_content_words_are_the_words_that_are_not_stop_words() -> None:
    vocab = Vocabulary.build([["i", "just", "love", "pizza", "n't", "!", "<num>", "haha"]], 1, 100)
    content = {vocab.itos[i] for i in VocabularyRules.build(vocab).content_ids}
    assert content == {"love", "pizza", "haha"}
    rules = VocabularyRules.build(vocab)
    assert rules.constraints(DecodingSettings()).once_ids == ()
    on = rules.constraints(DecodingSettings(no_repeat_words=True))
    assert on.once_ids == rules.content_ids and on.no_immediate_repeat


def test_beam_returns_n_best_sorted_by_length_normalised_score() -> None:
    model = _random_model(4)
    for hyps in beam_search(model, *_src(), 10, beam_size=5, alpha=0.6, n_best=5):
        scores = [h.normalized_score for h in hyps]
        assert len(hyps) == 5 and scores == sorted(scores, reverse=True)


def test_wider_beam_finds_no_worse_a_score() -> None:
    model = _random_model(5)
    src, lengths = _src(5)
    greedy = greedy_search(model, src, lengths, 10)
    beams = beam_search(model, src, lengths, 10, beam_size=6)
    for g, b in zip(greedy, beams, strict=True):
        assert b[0].normalized_score >= g.score - 1e-5


def test_sampling_with_top_k_of_one_is_greedy() -> None:
    model = _random_model(0)
    greedy = greedy_search(model, *_src(), max_length=10)
    sampled = sample(
        model, *_src(), max_length=10, top_k=1, generator=torch.Generator().manual_seed(1)
    )
    assert [g.tokens for g in greedy] == [s.tokens for s in sampled]


def test_sampling_is_reproducible_with_a_seeded_generator() -> None:
    model = _random_model(0)
    runs = [
        [
            h.tokens
            for h in sample(
                model, *_src(), 10, temperature=1.5, generator=torch.Generator().manual_seed(3)
            )
        ]
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    log_probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = filter_logits(log_probs, top_p=0.75).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    kept = filter_logits(log_probs, top_p=0.1).isfinite()
    assert kept.tolist() == [[True, False, False, False]]
    kept = filter_logits(log_probs, top_k=3).isfinite()
    assert kept.tolist() == [[True, True, True, False]]


def _all_strategies(
    model: Seq2Seq, max_length: int, constraints: StepConstraints, n_best: int = 1
) -> dict[str, list[list[int]]]:
    """Token ids each strategy returns for `_src()` under `constraints` (beam: its n best)."""
    beam = max(3, n_best)
    src, lengths = _src()
    generator = torch.Generator().manual_seed(5)
    return {
        "greedy": [h.tokens for h in greedy_search(model, src, lengths, max_length, constraints)],
        "beam": [
            h.tokens
            for hyps in beam_search(
                model, src, lengths, max_length, beam, constraints, n_best=n_best
            )
            for h in hyps
        ],
        "sample": [
            h.tokens
            for h in sample(
                model, src, lengths, max_length, constraints, temperature=1.0, generator=generator
            )
        ],
    }


def test_min_length_delays_eos_when_sampling() -> None:
    model = _random_model(0)
    _bias(model, EOS_ID)
    hyps = sample(model, *_src(), 10, StepConstraints(min_length=3), generator=torch.Generator())
    assert [len(h.tokens) for h in hyps] == [3, 3, 3]


def test_eos_waits_for_a_word() -> None:
    model = _random_model(0)
    _bias(model, EOS_ID)  # every strategy would end at once
    words = (20, 21, 22)
    assert all(
        tokens == []
        for out in _all_strategies(model, 10, StepConstraints()).values()
        for tokens in out
    )
    for strategy, out in _all_strategies(model, 10, StepConstraints(word_ids=words)).items():
        for tokens in out:
            assert tokens and tokens[-1] in words, strategy  # it ends right after its first word
            assert not set(tokens[:-1]) & set(words), strategy


def test_a_wordless_reply_takes_a_word_on_its_last_step() -> None:
    model = _random_model(0)
    _bias(model, 9, 60.0)  # a "placeholder" the model says at every step
    _bias(model, 30, -40.0)  # the only word, all but ruled out by the model
    constraints = StepConstraints(word_ids=(30,))
    for strategy, out in _all_strategies(model, 4, constraints).items():
        assert out == [[9, 9, 9, 30]] * 3, strategy


def test_word_rule_is_off_when_every_word_is_banned() -> None:
    model = _random_model(0)
    _bias(model, EOS_ID)
    constraints = StepConstraints(banned=(*NEVER_GENERATED, 20), word_ids=(20,))
    for out in _all_strategies(model, 5, constraints).values():
        assert out == [[], [], []]


@pytest.mark.parametrize("phrase", [(9, 10), (9, 10, 11)])
def test_a_banned_phrase_is_never_completed(phrase: tuple[int, ...]) -> None:
    model = _random_model(0)
    for rank, token in enumerate(phrase):  # the model says the phrase, then other tokens
        _bias(model, token, 50.0 - 15.0 * rank)
    free = StepConstraints(no_repeat_ngram=1)
    banned = StepConstraints(no_repeat_ngram=1, banned_phrases=(phrase,))
    n = len(phrase)

    def contains(tokens: list[int]) -> bool:
        return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))

    # Banned tokens are not renormalised away, so every order of the phrase's tokens scores the
    # same: a beam of 6 keeps them all.
    for strategy, out in _all_strategies(model, 8, free, n_best=6).items():
        assert any(contains(tokens) for tokens in out), strategy  # so the ban has work to do
    for strategy, out in _all_strategies(model, 8, banned, n_best=6).items():
        assert not any(contains(tokens) for tokens in out), strategy
        if strategy != "beam":  # the prefix is still said, only its completion is not
            assert all(tokens[: n - 1] == list(phrase[:-1]) for tokens in out), strategy


def test_a_phrase_of_one_token_is_refused() -> None:
    with pytest.raises(ValueError, match="two or more"):
        greedy_search(_random_model(0), *_src(), 5, StepConstraints(banned_phrases=((9,),)))


def test_top_p_reaches_past_the_first_tokens_looked_at() -> None:
    # A long-tailed (Zipf) distribution: the nucleus of p = 0.9 holds hundreds of tokens.
    probs = 1.0 / torch.arange(1, 2001, dtype=torch.float64)
    probs /= probs.sum()
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    log_probs = torch.stack([probs.log(), probs[order].log()]).float()  # (2, 2000)
    for top_p in (0.3, 0.9, 0.99):
        before = probs.cumsum(0) - probs  # float64 reference on the sorted probabilities
        expected = int((before < top_p).sum())
        assert expected > 64 or top_p == 0.3
        kept = filter_logits(log_probs, top_p=top_p).isfinite()
        assert kept.sum(dim=1).tolist() == [expected, expected]
        assert kept[1].tolist() == kept[0][order].tolist()


def test_finished_rows_leave_the_decode(tiny_model_dir: Path, tiny_pairs: list) -> None:
    checkpoint = load_checkpoint(tiny_model_dir)
    processor = TextProcessor(checkpoint.text_settings)
    ids = [checkpoint.vocab.encode(processor.tokenize(c)) for c, _ in tiny_pairs[:6]]
    src = torch.zeros(len(ids), max(map(len, ids)), dtype=torch.long)
    for i, row in enumerate(ids):
        src[i, : len(row)] = torch.tensor(row)
    lengths = torch.tensor([len(r) for r in ids])
    model = checkpoint.model
    rows_per_call: list[int] = []
    forward = model.decoder.forward

    def counting(*args, **kwargs):
        rows_per_call.append(args[0].size(0))
        return forward(*args, **kwargs)

    model.decoder.forward = counting  # type: ignore[method-assign]
    hyps = greedy_search(model, src, lengths, 20)
    replies = [len(h.tokens) for h in hyps]  # a row of n tokens takes n + 1 steps (<eos>)
    assert rows_per_call == [sum(n >= t for n in replies) for t in range(max(replies) + 1)]
    assert rows_per_call[-1] < len(ids)  # rows really left before the last step
