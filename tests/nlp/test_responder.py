from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config import DecodingSettings
from nlp.errors import EmptyInputError
from nlp.responder import Responder


@pytest.fixture(scope="module")
def responder(tiny_model_dir: Path) -> Responder:
    return Responder(tiny_model_dir)


def test_unknown_words_map_to_unk_and_never_crash(responder: Responder) -> None:
    replies = responder.reply(["qwzx plorf blargh", "hello zzyzx", "😀😀", "?!"])
    assert len(replies) == 4 and all(isinstance(r, str) for r in replies)
    assert responder.unknown_fraction("qwzx plorf") == 1.0
    assert responder.unknown_fraction("hello") == 0.0


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "\x00\u200b"])
def test_empty_contexts_are_rejected_clearly(responder: Responder, text: str) -> None:
    with pytest.raises(EmptyInputError, match="empty"):
        responder.reply([text])


def test_batched_replies_equal_one_by_one(responder: Responder, tiny_pairs: list) -> None:
    contexts = [c for c, _ in tiny_pairs]
    assert responder.reply(contexts) == [responder.reply([c])[0] for c in contexts]


def test_concurrent_callers_get_the_same_replies(responder: Responder, tiny_pairs: list) -> None:
    contexts = [c for c, _ in tiny_pairs]
    expected = responder.reply(contexts)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: responder.reply([c])[0], contexts * 3))
    assert results == expected * 3


def test_multi_turn_context_uses_only_the_trained_number_of_turns(responder: Responder) -> None:
    assert responder.context_turns == 1
    assert responder.reply([["bye", "hello"]]) == responder.reply(["hello"])


def test_beam_sampling_and_int8_decoding(tiny_model_dir: Path, responder: Responder) -> None:
    greedy = responder.reply(["how are you?"])
    beam = Responder(tiny_model_dir, DecodingSettings(strategy="beam", beam_size=4))
    assert beam.reply(["how are you?"]) == greedy  # an overfit model is sure of its reply
    sampled = Responder(tiny_model_dir, DecodingSettings(strategy="sample", top_p=0.5))
    assert sampled.reply(["how are you?"]) == greedy
    int8 = Responder(tiny_model_dir, DecodingSettings(quantize_int8=True))
    assert int8.reply(["how are you?"]) == greedy


def test_attention_weights_cover_the_context(responder: Responder) -> None:
    source, reply, weights = responder.attention("what is your name?")
    assert source == ["what", "is", "your", "name", "?"]
    assert len(weights) == len(reply.tokens) and all(len(row) == len(source) for row in weights)
    assert all(abs(sum(row) - 1.0) < 1e-4 for row in weights)
