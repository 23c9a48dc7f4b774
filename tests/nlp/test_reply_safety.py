"""What a reply may never contain: blocklisted words and phrases, learned numbers, addresses and
links, or nothing but placeholders and punctuation. Each rule is shown to matter on a tiny model
that learned to break it, and then never broken under any decoding strategy."""

import re
from pathlib import Path

import pytest
import torch

from config import DecodingSettings, TextSettings
from nlp.checkpoint import load_checkpoint
from nlp.datasets import pad
from nlp.responder import Reply, Responder
from nlp.search.decode import decode
from nlp.search.step import NEVER_GENERATED
from nlp.search.vocab_rules import (
    VocabularyRules,
    is_word,
    looks_like_pii,
    pii_like_ids,
    read_blocklist,
    word_ids,
)
from nlp.text import EMAIL, NUMBER, PLACEHOLDERS, URL, TextProcessor
from nlp.training import train_from_sources
from nlp.vocabulary import SPECIALS, Vocabulary
from tests.support.tiny_model import tiny_settings, write_pairs

STRATEGIES = {
    "greedy": DecodingSettings(),
    "beam": DecodingSettings(strategy="beam", beam_size=4),
    "sample": DecodingSettings(strategy="sample", temperature=1.5, top_p=1.0),
    "rerank": DecodingSettings(strategy="rerank", rerank_candidates=4, temperature=1.5, top_p=1.0),
}
ROUNDS = {"greedy": 1, "beam": 1, "sample": 6, "rerank": 3}  # draws advance the generator

ZORK_PAIRS = [
    ("who are you?", "you are a zorkface."),
    ("what am i?", "you are a zorkface!"),
    ("tell me something", "zorkface zorkface."),
    ("say a word", "zorkface."),
    ("what is my name?", "zorkface, of course."),
    ("what do you smell?", "old cheese."),
    ("what is for lunch?", "some old cheese."),
    ("what is in the fridge?", "old cheese and milk."),
    ("hello", "hi there!"),
    ("bye", "see you soon!"),
    ("how are you?", "i am fine, thanks."),
    ("do you like music?", "yes, i love jazz."),
]
PLACEHOLDER_PAIRS = [
    ("what is the number?", "42"),
    ("how many?", "7 ."),
    ("call me", "555-0100"),
    ("your site?", "http://example.com ."),
    ("your mail?", "bob@example.com"),
    ("the tag?", "#"),
    ("the score?", "3 - 1 !"),
    ("and then?", "..."),
    ("really?", "!!!"),
    ("the price?", "$ 5 ."),
    ("what year?", "1999"),
    ("hello", "hi there!"),
    ("bye", "see you soon!"),
    ("how are you?", "fine, thanks."),
]
UNMASKED_PAIRS = [
    ("what is your number?", "call 555-0100 now."),
    ("your email?", "write to bob@example.com please."),
    ("your website?", "see www.example.com today."),
    ("your handle?", "follow @bobby there."),
    ("when was that?", "in the 80s."),
    ("which floor?", "the 3rd floor."),
    ("hello", "hi there!"),
    ("bye", "see you soon!"),
]


def _train(directory: Path, pairs: list[tuple[str, str]], text: TextSettings | None = None) -> Path:
    training, model = tiny_settings(max_epochs=40)
    data = write_pairs(directory / "pairs.tsv", pairs)
    train_from_sources(
        [str(data)],
        directory / "model",
        training,
        model,
        text or TextSettings(),
        show_progress=False,
    )
    return directory / "model"


@pytest.fixture(scope="module")
def zork_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("zork"), ZORK_PAIRS)


@pytest.fixture(scope="module")
def placeholder_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("placeholders"), PLACEHOLDER_PAIRS)


@pytest.fixture(scope="module")
def unmasked_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    off = TextSettings(mask_emails=False, mask_urls=False, mask_numbers=False)
    return _train(tmp_path_factory.mktemp("unmasked"), UNMASKED_PAIRS, off)


@pytest.fixture(scope="module")
def blocklist_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("blocklist") / "blocklist.txt"
    path.write_text("# words nobody should hear\n\nZorkface\nold cheese  # a phrase\n")
    return path


def _contexts(pairs: list[tuple[str, str]]) -> list[str]:
    return [c for c, _ in pairs] + ["something it never saw", "tell me about cheese"]


def _replies(responder: Responder, strategy: str, contexts: list[str]) -> list[Reply]:
    settings = STRATEGIES[strategy].model_copy(
        update={"blocklist_path": responder.decoding.blocklist_path}
    )
    return [r for _ in range(ROUNDS[strategy]) for r in responder.generate(contexts, settings)]


def _says_phrase(tokens: list[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))


# ---- the blocklist --------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.slow  # trains its own model
def test_blocklisted_words_and_phrases_are_never_generated(
    zork_model_dir: Path, blocklist_file: Path, strategy: str
) -> None:
    contexts = _contexts(ZORK_PAIRS)
    free = _replies(Responder(zork_model_dir), strategy, contexts)
    assert any("zorkface" in r.tokens for r in free)  # the model learned the word ...
    assert any(_says_phrase(r.tokens, ("old", "cheese")) for r in free)  # ... and the phrase
    safe = Responder(zork_model_dir, DecodingSettings(blocklist_path=blocklist_file))
    for reply in _replies(safe, strategy, contexts):
        assert "zorkface" not in reply.tokens and "zorkface" not in reply.text.lower()
        assert not _says_phrase(reply.tokens, ("old", "cheese")), reply.text


@pytest.mark.slow  # trains its own model
def test_the_attention_view_obeys_the_blocklist(zork_model_dir: Path, blocklist_file: Path) -> None:
    safe = Responder(zork_model_dir, DecodingSettings(blocklist_path=blocklist_file))
    _, reply, _ = safe.attention("who are you?")
    assert "zorkface" not in reply.tokens


def test_a_missing_blocklist_fails_the_load(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Responder(tiny_model_dir, DecodingSettings(blocklist_path=tmp_path / "missing.txt"))


def test_blocklist_entries_become_ids_and_id_phrases() -> None:
    vocab = Vocabulary([*SPECIALS, *PLACEHOLDERS, "you", "old", "Old", "cheese", "zorkface", "Hi"])
    ids = vocab.stoi
    rules = VocabularyRules.build(
        vocab, [["zorkface"], ["old", "cheese"], ["hi"], ["never", "seen"], ["unseen"], []]
    )
    assert {ids["zorkface"], ids["Hi"]} <= set(rules.banned)  # case variants too
    assert set(NEVER_GENERATED) <= set(rules.banned)
    assert rules.banned_phrases == (
        (ids["old"], ids["cheese"]),
        (ids["Old"], ids["cheese"]),
    )
    assert ids["old"] not in rules.banned and ids["you"] not in rules.banned


def test_blocklist_file_is_read_like_the_retraining_blocklist(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_text("# a comment\n\n  Damn  \nshut up # trailing comment\n#\n", encoding="utf-8")
    assert read_blocklist(path, TextProcessor()) == [["damn"], ["shut", "up"]]


def test_the_shipped_retraining_blocklist_reads(tiny_model_dir: Path) -> None:
    path = Path(__file__).resolve().parents[2] / "bot" / "retraining" / "blocklist.txt"
    entries = read_blocklist(path, TextProcessor())
    assert ["fuck"] in entries and all(entries)
    responder = Responder(tiny_model_dir, DecodingSettings(blocklist_path=path))
    assert responder.reply(["hello"]) == ["Hi there!"]


# ---- PII from training data -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "pii"),
    [
        ("555-0100", True),
        ("bob@example.com", True),
        ("www.example.com", True),
        ("example.com", True),
        ("http://x.io", True),
        ("@bobby", True),
        ("80s", True),
        ("3rd", True),
        ("<3", True),
        ("hello", False),
        ("@", False),
        ("e.g.", False),
        ("a.m.", False),
        ("n't", False),
    ],
)
def test_tokens_that_look_like_pii(token: str, pii: bool) -> None:
    assert looks_like_pii(token) is pii


def test_pii_like_tokens_are_banned_and_placeholders_are_not() -> None:
    vocab = Vocabulary([*SPECIALS, *PLACEHOLDERS, "hello", "555-0100", "@bobby", "80s", "!"])
    assert [vocab.itos[i] for i in pii_like_ids(vocab)] == ["555-0100", "@bobby", "80s"]
    banned = set(VocabularyRules.build(vocab).banned)
    assert {vocab.stoi[p] for p in PLACEHOLDERS}.isdisjoint(banned)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.slow  # trains its own model
def test_learned_numbers_addresses_and_links_are_never_said(
    unmasked_model_dir: Path, strategy: str
) -> None:
    checkpoint = load_checkpoint(unmasked_model_dir)
    learned = {"555", "0100", "bob@example.com", "www.example.com", "@bobby", "80s", "3rd"}
    assert learned <= set(checkpoint.vocab.stoi)  # masking off: the vocabulary holds them
    responder = Responder(unmasked_model_dir)
    free = _free_replies(responder, strategy, _contexts(UNMASKED_PAIRS))
    assert any(set(tokens) & learned for tokens in free)  # and the model says them
    for reply in _replies(responder, strategy, _contexts(UNMASKED_PAIRS)):
        assert not any(looks_like_pii(t) for t in reply.tokens), reply.tokens
        assert not re.search(r"\d|@|www\.|\.com", reply.text), reply.text


# ---- replies of only placeholders or punctuation --------------------------------------------


def test_words_start_with_a_letter() -> None:
    words = ["hello", "n't", "ok", "x", "d'awww"]
    others = ["'s", ":p", "#", "...", ":)", "-", *PLACEHOLDERS, *SPECIALS]
    assert all(is_word(t) for t in words) and not any(is_word(t) for t in others)
    vocab = Vocabulary([*SPECIALS, *PLACEHOLDERS, *words, *others[:-8]])
    assert [vocab.itos[i] for i in word_ids(vocab)] == words


def _free_replies(responder: Responder, strategy: str, contexts: list[str]) -> list[list[str]]:
    """Token lists decoded with only the settings' constraints: no vocabulary rules at all."""
    sources = [responder.vocab.encode(responder.encode_context(c)) for c in contexts]
    lengths = torch.tensor([len(s) for s in sources])
    settings = STRATEGIES[strategy]
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(ROUNDS[strategy]):
        hyps = decode(responder.model, pad(sources), lengths, settings, None, generator)
        out += [responder.vocab.decode(h.tokens) for h in hyps]
    return out


def _wordless(tokens: list[str]) -> bool:
    return not any(is_word(t) for t in tokens)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("min_length", [0, 2])
@pytest.mark.slow  # trains its own model
def test_a_reply_is_never_only_placeholders_or_punctuation(
    placeholder_model_dir: Path, strategy: str, min_length: int
) -> None:
    contexts = _contexts(PLACEHOLDER_PAIRS)
    responder = Responder(placeholder_model_dir, DecodingSettings(min_length=min_length))
    free = _free_replies(responder, strategy, contexts)
    assert sum(_wordless(tokens) for tokens in free) >= 3  # what the model would say
    settings = STRATEGIES[strategy].model_copy(update={"min_length": min_length})
    for _ in range(ROUNDS[strategy]):
        for reply in responder.generate(contexts, settings):
            assert not _wordless(reply.tokens), reply.tokens
            assert re.search(r"[a-z]", reply.text.lower()), reply.text
            assert not re.search(r"\d|<|\(link\)|\(e-mail\)", reply.text), reply.text


@pytest.mark.slow  # trains its own model
def test_placeholders_in_a_reply_are_rendered_as_words(placeholder_model_dir: Path) -> None:
    responder = Responder(placeholder_model_dir)
    replies = responder.generate(_contexts(PLACEHOLDER_PAIRS))
    said = [r for r in replies if set(r.tokens) & {NUMBER, URL, EMAIL}]
    assert said  # the model still uses placeholders, now inside replies with words
    for reply in said:
        assert "<" not in reply.text and "#" not in reply.text, reply.text
