"""The blocklist: pairs that contain a listed word or phrase never become training data.

Entries are tokenised by the same `TextProcessor` as the pairs, so case and punctuation do not
matter, and an entry matches whole tokens only ("class" is not blocked by "ass"; list spelling
variants as entries of their own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.retraining.errors import RetrainError
from nlp.text import TextProcessor


@dataclass(frozen=True)
class Blocklist:
    words: frozenset[str]
    phrases: tuple[tuple[str, ...], ...]  # entries of two or more tokens

    @classmethod
    def load(cls, path: Path, processor: TextProcessor) -> Blocklist:
        """One entry per line; blank lines and `#` comments are ignored. A file that cannot be
        read (missing, a directory, not UTF-8) is a `RetrainError` naming it, in one line."""
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise RetrainError(f"cannot read the blocklist {path}: not UTF-8 text") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise RetrainError(f"cannot read the blocklist {path}: {reason}") from None
        entries = [line.split("#", 1)[0].strip() for line in lines]
        return cls.of(processor.tokenize_many([e for e in entries if e]))

    @classmethod
    def of(cls, entries: Sequence[Sequence[str]]) -> Blocklist:
        words = frozenset(e[0] for e in entries if len(e) == 1)
        phrases = tuple(tuple(e) for e in entries if len(e) > 1)
        return cls(words, phrases)

    def __len__(self) -> int:
        return len(self.words) + len(self.phrases)

    def blocks(self, tokens: Sequence[str]) -> bool:
        """True when `tokens` contain an entry."""
        if any(token in self.words for token in tokens):
            return True
        return any(_contains(tokens, phrase) for phrase in self.phrases)


def _contains(tokens: Sequence[str], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1))
