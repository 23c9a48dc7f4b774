from pathlib import Path

import pytest

from nlp.errors import CheckpointError
from nlp.vocabulary import EOS_ID, SPECIALS, UNK_ID, Vocabulary


def test_specials_come_first_and_unknown_words_map_to_unk() -> None:
    vocab = Vocabulary.build([["a", "b", "a"], ["c"]], min_count=1)
    assert tuple(vocab.itos[:5]) == SPECIALS
    assert vocab.encode(["a", "zzz"]) == [vocab.stoi["a"], UNK_ID]


def test_min_count_and_max_size() -> None:
    vocab = Vocabulary.build([["a", "a", "b", "c", "c", "c"]], min_count=2)
    assert "b" not in vocab and "a" in vocab
    small = Vocabulary.build([["a", "a", "b", "c", "c", "c"]], max_size=len(SPECIALS) + 4)
    assert len(small) == len(SPECIALS) + 4


def test_extension_keeps_every_old_id() -> None:
    vocab = Vocabulary.build([["a", "b", "c"]])
    before = dict(vocab.stoi)
    added = vocab.extend([["d", "d", "a", "e"]], min_count=1)
    assert added == ["d", "e"]
    assert all(vocab.stoi[t] == i for t, i in before.items())
    assert vocab.stoi["d"] == len(before)


def test_an_extension_adds_only_allowed_words_however_frequent_the_others() -> None:
    vocab = Vocabulary.build([["a"]], min_count=1)
    added = vocab.extend([["secret", "secret", "secret", "b"], ["b", "a"]], allowed={"b", "a"})
    assert added == ["b"]
    assert "secret" not in vocab and vocab.encode(["secret"]) == [UNK_ID]


def test_decode_stops_at_eos_and_drops_specials() -> None:
    vocab = Vocabulary.build([["a", "b"]])
    ids = [vocab.stoi["a"], UNK_ID, vocab.stoi["b"], EOS_ID, vocab.stoi["a"]]
    assert vocab.decode(ids) == ["a", "b"]


def test_save_load_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    vocab = Vocabulary.build([["héllo", "😀"]])
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json").itos == vocab.itos
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        Vocabulary.load(tmp_path / "bad.json")
