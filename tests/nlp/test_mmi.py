from pathlib import Path

import pytest
import torch

from config import DecodingSettings, TextSettings
from nlp.checkpoint import load_checkpoint
from nlp.responder import Responder
from nlp.search.hypothesis import Hypothesis
from nlp.search.mmi import ReverseModel, mmi_rerank, sequence_log_probs
from nlp.search.rerank import RerankScoring, sample_and_rerank
from nlp.search.sampling import sample
from nlp.text import TextProcessor
from nlp.training import train_from_sources
from tests.support.tiny_model import tiny_settings


@pytest.fixture(scope="module")
def reverse_dir(tmp_path_factory: pytest.TempPathFactory, tiny_pairs_file: Path) -> Path:
    out = tmp_path_factory.mktemp("reverse") / "rev"
    training, model = tiny_settings()
    train_from_sources(
        [str(tiny_pairs_file)],
        out,
        training,
        model,
        TextSettings(),
        reverse=True,
        show_progress=False,
    )
    return out


def test_reverse_model_learns_p_context_given_reply(reverse_dir: Path) -> None:
    checkpoint = load_checkpoint(reverse_dir)
    assert checkpoint.recipe.direction == "reverse"
    assert Responder(reverse_dir).reply(["hi there!"]) == ["Hello"]


def test_sequence_log_probs_prefers_the_trained_target(reverse_dir: Path) -> None:
    checkpoint = load_checkpoint(reverse_dir)
    processor, vocab = TextProcessor(), checkpoint.vocab
    src = vocab.encode(processor.tokenize("hi there!"))
    right, wrong = vocab.encode(["hello"]), vocab.encode(["bye"])
    scores = sequence_log_probs(checkpoint.model, [src, src], [right, wrong])
    assert scores[0] > scores[1]


def test_mmi_reranking_replaces_a_generic_reply_with_a_specific_one(
    tiny_model_dir: Path, reverse_dir: Path
) -> None:
    forward = load_checkpoint(tiny_model_dir)
    processor, vocab = TextProcessor(), forward.vocab
    reverse = ReverseModel.load(reverse_dir, vocab, torch.device("cpu"))
    context = vocab.encode(processor.tokenize("hello"))
    generic = Hypothesis(vocab.encode(processor.tokenize("you are welcome.")), -1.0, -1.0)
    specific = Hypothesis(vocab.encode(processor.tokenize("hi there!")), -3.0, -3.0)
    assert mmi_rerank(reverse, [context], [[generic, specific]], weight=0.0)[0] is generic
    assert mmi_rerank(reverse, [context], [[generic, specific]], weight=1.0)[0] is specific


def test_responder_with_mmi_reranks_beam_candidates(
    tiny_model_dir: Path, reverse_dir: Path
) -> None:
    responder = Responder(
        tiny_model_dir, DecodingSettings(strategy="beam", beam_size=3, mmi_reverse_dir=reverse_dir)
    )
    assert responder.reply(["hello", "how are you?"]) == ["Hi there!", "I am fine, thanks."]


def test_rerank_adds_the_reverse_models_score(tiny_model_dir: Path, reverse_dir: Path) -> None:
    forward = load_checkpoint(tiny_model_dir)
    processor, vocab = TextProcessor(), forward.vocab
    reverse = ReverseModel.load(reverse_dir, vocab, torch.device("cpu"))
    context = vocab.encode(processor.tokenize("hello"))
    src, lengths = torch.tensor([context]), torch.tensor([len(context)])
    n, max_length = 8, 12
    for weight in (0.0, 2.0):
        best = sample_and_rerank(
            forward.model,
            src,
            lengths,
            max_length,
            n,
            temperature=2.0,
            generator=torch.Generator().manual_seed(1),
            scoring=RerankScoring(reverse=reverse, mmi_weight=weight),
        )[0]
        drawn = sample(
            forward.model,
            src.repeat(n, 1),
            lengths.repeat(n),
            max_length,
            temperature=2.0,
            generator=torch.Generator().manual_seed(1),
        )
        said = [h for h in drawn if h.tokens]
        backward = sequence_log_probs(
            reverse.model,
            [reverse.remap(h.tokens) for h in said],
            [reverse.remap(context)] * len(said),
        )
        expected = [
            h.score / min(len(h.tokens) + 1, max_length) + weight * b
            for h, b in zip(said, backward, strict=True)
        ]
        assert best.normalized_score == pytest.approx(max(expected))
        assert best.tokens == said[expected.index(max(expected))].tokens


def test_responder_reranks_samples_with_the_reverse_model(
    tiny_model_dir: Path, reverse_dir: Path
) -> None:
    responder = Responder(
        tiny_model_dir,
        DecodingSettings(strategy="rerank", rerank_candidates=8, mmi_reverse_dir=reverse_dir),
    )
    assert responder.reply(["hello", "how are you?"]) == ["Hi there!", "I am fine, thanks."]
