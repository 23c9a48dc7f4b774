"""What a model's vocabulary rules out of every reply, worked out once per loaded model.

- PII-looking tokens. Training text is masked (e-mails, URLs and numbers become `<email>`,
  `<url>`, `<num>`), yet a vocabulary can still hold tokens that look like them: spaCy's
  `like_num` passes "80s" or "k-12", a handle such as "@name" is no e-mail, and a checkpoint
  trained with masking off learns whole addresses. A token with a digit, with "@" beside other
  characters, or that spaCy takes for an e-mail or a URL is never generated; the placeholders are,
  and the Responder renders them as harmless words.
- The blocklist. A one-token entry is banned by id, a longer one as a phrase (its last id after
  the rest). Case variants in the vocabulary are banned too; an entry with a token the vocabulary
  lacks cannot be generated and needs no ban.
- Words. A reply needs a token that starts with a letter (not a placeholder or a special): a
  reply of only placeholders, punctuation, emoticons (":p") or a bare clitic ("'s") never ends.
- Content words: words that are not English stop words (spaCy's list), for the rule that says
  each at most once a reply (`DecodingSettings.no_repeat_words`).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from config import DecodingSettings
from nlp.search.step import NEVER_GENERATED, StepConstraints
from nlp.text import PLACEHOLDERS, TextProcessor
from nlp.vocabulary import SPECIALS, Vocabulary


@dataclass(frozen=True)
class VocabularyRules:
    banned: tuple[int, ...]  # specials, PII-looking tokens, blocklisted words
    banned_phrases: tuple[tuple[int, ...], ...]  # blocklisted phrases as id sequences
    word_ids: tuple[int, ...]  # tokens that make a reply more than placeholders and punctuation
    content_ids: tuple[int, ...]  # words that are not stop words

    @classmethod
    def build(cls, vocab: Vocabulary, blocklist: Sequence[Sequence[str]] = ()) -> VocabularyRules:
        """`blocklist`: entries tokenised like the model's text (`read_blocklist`)."""
        by_lowercase: dict[str, list[int]] = defaultdict(list)
        for i, token in enumerate(vocab.itos):
            if i >= len(SPECIALS) and token not in PLACEHOLDERS:
                by_lowercase[token.lower()].append(i)
        banned = set(NEVER_GENERATED) | set(pii_like_ids(vocab))
        phrases: set[tuple[int, ...]] = set()
        for entry in blocklist:
            variants = [by_lowercase.get(token.lower(), []) for token in entry]
            if not variants or not all(variants):
                continue  # empty, or a token the model cannot say
            if len(entry) == 1:
                banned.update(variants[0])
            else:
                phrases.update(itertools.product(*variants))
        return cls(
            tuple(sorted(banned)),
            tuple(sorted(phrases)),
            tuple(word_ids(vocab)),
            tuple(content_word_ids(vocab)),
        )

    def constraints(self, settings: DecodingSettings) -> StepConstraints:
        return StepConstraints(
            settings.min_length,
            settings.no_repeat_ngram,
            self.banned,
            self.banned_phrases,
            self.word_ids,
            no_immediate_repeat=settings.no_repeat_words,
            once_ids=self.content_ids if settings.no_repeat_words else (),
        )


def looks_like_pii(token: str) -> bool:
    """A digit anywhere, "@" with anything else, or an e-mail or URL by spaCy's rules."""
    from spacy.lang.lex_attrs import like_email, like_url  # spaCy loads only where it is used

    return (
        any(ch.isdigit() for ch in token)
        or ("@" in token and len(token) > 1)
        or like_email(token)
        or like_url(token)
    )


def pii_like_ids(vocab: Vocabulary) -> list[int]:
    return [
        i
        for i, token in enumerate(vocab.itos)
        if i >= len(SPECIALS) and token not in PLACEHOLDERS and looks_like_pii(token)
    ]


def is_word(token: str) -> bool:
    """A token that starts with a letter and is no placeholder or special ("i", "n't", "ok")."""
    return token[:1].isalpha()


def word_ids(vocab: Vocabulary) -> list[int]:
    # Specials and placeholders start with "<", so `is_word` already rules them out.
    return [i for i, token in enumerate(vocab.itos) if is_word(token)]


def content_word_ids(vocab: Vocabulary) -> list[int]:
    """Words that carry the reply's content: not a stop word ("i", "just", "n't", "the")."""
    from spacy.lang.en.stop_words import STOP_WORDS  # spaCy loads only where it is used

    return [i for i in word_ids(vocab) if vocab.itos[i].lower() not in STOP_WORDS]


def read_blocklist(path: Path, processor: TextProcessor) -> list[list[str]]:
    """Entries of a blocklist file, tokenised by `processor`: one entry per line, blank lines and
    `#` comments ignored (the retraining blocklist's format). OSError when it cannot be read."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    entries = [line.split("#", 1)[0].strip() for line in lines]
    return [tokens for tokens in processor.tokenize_many([e for e in entries if e]) if tokens]
