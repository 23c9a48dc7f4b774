import json
from pathlib import Path

import pytest

from nlp.datasets import (
    Corpus,
    Dialogue,
    EncodedPair,
    bucketed_batches,
    load_source,
    make_pairs,
    prepare_corpus,
    split_pairs,
    tokenize_pairs,
)
from nlp.errors import DataError
from nlp.recipe import DataRecipe
from nlp.text import TextProcessor
from nlp.vocabulary import PAD_ID, SEP


@pytest.mark.slow  # reads the whole chitchat corpus
def test_chitchat_dataset_has_all_conversations() -> None:
    dialogues = load_source("chitchat")
    assert len(dialogues) == 7168
    assert all(len(d.turns) >= 1 for d in dialogues)


def test_chatterbot_corpus_loads_english_conversations() -> None:
    dialogues = load_source("chatterbot")
    assert len(dialogues) > 500
    assert any(d.turns[:2] == ("Hello", "Hi") for d in dialogues)


def test_tsv_and_jsonl_files(tmp_path: Path) -> None:
    (tmp_path / "a.tsv").write_text("hi\thello\n\nhow are you\tfine\n")
    lines = [json.dumps({"context": "x", "reply": "y"}), json.dumps({"context": "a", "reply": "b"})]
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    assert [d.turns for d in load_source(str(tmp_path / "a.tsv"))] == [
        ("hi", "hello"),
        ("how are you", "fine"),
    ]
    assert len(load_source(str(tmp_path / "b.jsonl"))) == 2


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.tsv", "only one field\n", "bad.tsv:1"),
        ("bad.jsonl", '{"context": "x"}\n', "bad.jsonl:1"),
        ("bad.jsonl", "not json\n", "bad.jsonl:1"),
        ("empty.tsv", "", "no dialogue pairs"),
        ("data.csv", "a,b\n", "unknown data source"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_source(str(tmp_path / name))


def test_missing_file_and_unknown_source() -> None:
    with pytest.raises(DataError, match="not found"):
        load_source("/no/such/file.tsv")
    with pytest.raises(DataError, match="unknown data source"):
        load_source("reddit")


def test_multi_turn_context_joins_turns_with_sep() -> None:
    dialogue = Dialogue("d", ("hi", "hello", "how are you", "fine"))
    pairs = make_pairs([dialogue], context_turns=2)
    assert [p.context for p in pairs] == [("hi",), ("hi", "hello"), ("hello", "how are you")]
    tokenized = tokenize_pairs(pairs, TextProcessor(), DataRecipe(context_turns=2, max_length=10))
    assert tokenized[2].context == ["hello", SEP, "how", "are", "you"]


def test_length_filter_drops_long_replies_and_cuts_long_contexts() -> None:
    pairs = make_pairs([Dialogue("d", ("a b c d e f", "x y", "p q r s t u v"))])
    tokenized = tokenize_pairs(pairs, TextProcessor(), DataRecipe(max_length=4))
    assert len(tokenized) == 1  # the 7-token reply is dropped
    assert tokenized[0].context == ["c", "d", "e", "f"]  # the most recent words are kept


@pytest.mark.slow  # reads the whole chitchat corpus
def test_split_is_by_conversation_and_deterministic() -> None:
    dialogues = load_source("chitchat")[:2000]
    pairs = make_pairs(dialogues)
    first = split_pairs(pairs, 0.1, 0.1)
    again = split_pairs(pairs, 0.1, 0.1)
    assert first == again
    ids = {name: {p.dialogue_id for p in split} for name, split in first.items()}
    assert not ids["train"] & ids["valid"] and not ids["train"] & ids["test"]
    assert not ids["valid"] & ids["test"]
    assert 0.05 < len(first["test"]) / len(pairs) < 0.15


def test_bucketing_wastes_less_on_padding_than_random_batches() -> None:
    import random

    rng = random.Random(0)
    pairs = [EncodedPair([5] * rng.randint(1, 20), [6] * rng.randint(1, 20)) for _ in range(2000)]

    # Target padding is what costs: the encoder packs its sequences and skips source padding.
    def padding(batches) -> float:
        total = pad = 0
        for b in batches:
            total += b.trg_out.numel()
            pad += int(b.trg_out.eq(PAD_ID).sum())
        return pad / total

    from nlp.datasets import collate

    random_batches = [collate(pairs[i : i + 64]) for i in range(0, len(pairs), 64)]
    bucketed = list(bucketed_batches(pairs, 64, shuffle=True, seed=1))
    assert sum(len(b.src) for b in bucketed) == len(pairs)
    assert padding(bucketed) < padding(random_batches) / 4


def test_prepare_corpus_builds_vocab_from_training_split(tmp_path: Path) -> None:
    (tmp_path / "d.tsv").write_text("hello there\thi\nhow are you\tfine thanks\n")

    def prepare(reverse: bool) -> Corpus:
        recipe = DataRecipe(
            sources=(str(tmp_path / "d.tsv"),),
            direction="reverse" if reverse else "forward",
            max_length=10,
            valid_fraction=0.0,
            test_fraction=0.0,
            min_count=1,
            max_vocab=100,
        )
        return prepare_corpus(recipe, TextProcessor())

    corpus = prepare(reverse=False)
    assert "hello" in corpus.vocab and len(corpus.encoded["train"]) == 2
    reverse = prepare(reverse=True)
    assert reverse.tokenized["train"][0].context == ["hi"]
    assert reverse.tokenized["train"][0].reply == ["hello", "there"]
