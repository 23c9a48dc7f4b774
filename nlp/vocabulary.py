"""Token <-> id mapping, one for encoder and decoder: contexts and replies share their words."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from nlp.errors import CheckpointError
from nlp.text import PLACEHOLDERS

PAD, UNK, SOS, EOS, SEP = "<pad>", "<unk>", "<sos>", "<eos>", "<sep>"
SPECIALS = (PAD, UNK, SOS, EOS, SEP)
PAD_ID, UNK_ID, SOS_ID, EOS_ID, SEP_ID = range(len(SPECIALS))


class Vocabulary:
    """Ids are stable: specials first, then placeholders, then words by frequency.

    `extend` only appends, so a fine-tuned model keeps every id (and embedding row) it had.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.itos: list[str] = list(tokens)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in vocabulary")

    @classmethod
    def build(
        cls, sentences: Iterable[Sequence[str]], min_count: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """`max_size` counts every entry, specials and placeholders included."""
        reserved = [*SPECIALS, *PLACEHOLDERS]
        limit = None if max_size is None else max_size - len(reserved)
        return cls(reserved + _frequent_words(sentences, set(reserved), min_count, limit))

    def extend(
        self,
        sentences: Iterable[Sequence[str]],
        min_count: int = 1,
        max_new: int | None = None,
        *,
        allowed: Collection[str] | None = None,
    ) -> list[str]:
        """Append frequent unseen words (with `allowed`, only those of them it lists); returns
        the words added (their ids follow the old ones)."""
        if allowed is not None:
            permitted = allowed  # a name the closure below sees as non-optional
            sentences = ([tok for tok in s if tok in permitted] for s in sentences)
        added = _frequent_words(sentences, set(self.stoi), min_count, max_new)
        for word in added:
            self.stoi[word] = len(self.itos)
            self.itos.append(word)
        return added

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Sequence[str]) -> list[int]:
        return [self.stoi.get(tok, UNK_ID) for tok in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids to tokens, stopping at the first `<eos>` and dropping other specials."""
        out: list[str] = []
        for i in ids:
            if i == EOS_ID:
                break
            if i >= len(SPECIALS):
                out.append(self.itos[i])
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"itos": self.itos}, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(data["itos"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"cannot read vocabulary {path}: {exc}") from exc


def _frequent_words(
    sentences: Iterable[Sequence[str]], known: set[str], min_count: int, limit: int | None
) -> list[str]:
    counts = Counter(tok for sentence in sentences for tok in sentence if tok not in known)
    # Sort by count, then alphabetically, so the same data always gives the same ids.
    ranked = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return ranked if limit is None else ranked[: max(0, limit)]
