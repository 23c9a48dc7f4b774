"""Raw text <-> tokens: normalisation, spaCy tokenising, masking of PII-like tokens, detokenising.

spaCy's blank English tokenizer does the hard part (contractions, punctuation, URLs stay whole) and
flags e-mails, URLs and numbers (`like_email`, `like_url`, `like_num`), which we replace by
placeholders so the model never learns (or repeats) anyone's address or phone number.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, cast

from config import TextSettings
from nlp.errors import NlpError

if TYPE_CHECKING:  # spaCy loads when a processor is made: pre-tokenised data never needs it
    from spacy.language import Language
    from spacy.tokens import Doc, Token

EMAIL, URL, NUMBER = "<email>", "<url>", "<num>"
PLACEHOLDERS = (EMAIL, URL, NUMBER)
# How a placeholder reads in a reply shown to a person.
_PLACEHOLDER_TEXT = {EMAIL: "(e-mail)", URL: "(link)", NUMBER: "#"}

_WHITESPACE = re.compile(r"\s+")
_NO_SPACE_BEFORE = re.compile(r"^(?:[.,!?;:%)\]}]+|'(?:s|m|d|re|ve|ll)|n't|…|\.\.\.)$", re.I)
_NO_SPACE_AFTER = {"(", "[", "{", "$", "#"}
# spaCy splits "whats" / "doesnt" / "im" into ("what", "s"), ("does", "nt"), ("i", "m"): glue the
# bare clitic back only after words it attaches to, so a lone "s" or "d" elsewhere stays a word.
_BARE_CLITICS = {"s", "m", "re", "ve", "ll", "d"}
_CLITIC_HOSTS = {
    "i",
    "you",
    "we",
    "they",
    "he",
    "she",
    "it",
    "that",
    "what",
    "where",
    "who",
    "there",
    "here",
    "how",
    "let",
    "when",
    "why",
}
_SENTENCE_END = {".", "!", "?", "…", "..."}


class SpacyModelMissingError(NlpError, ValueError):
    """`text.spacy_model` (a setting, or a checkpoint's) names a pipeline that is not installed."""


def normalize(text: str, lowercase: bool = True) -> str:
    """NFKC, control characters removed, whitespace collapsed, optionally lowercased."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(
        " " if ch.isspace() else ch
        for ch in text
        if ch.isspace() or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    text = _WHITESPACE.sub(" ", text).strip()
    return text.lower() if lowercase else text


def detokenize(tokens: Iterable[str]) -> str:
    """`i 'm fine .` -> `I'm fine.`: glue punctuation and clitics, capitalise sentences and 'i'."""
    out: list[str] = []
    capitalize_next = True
    glue_next = False
    previous = ""
    for token in tokens:
        word = _PLACEHOLDER_TEXT.get(token, token)
        if word == "i":
            word = "I"
        elif word.startswith("i'"):
            word = "I" + word[1:]
        if capitalize_next and word[:1].isalpha():
            word = word[0].upper() + word[1:]
            capitalize_next = False
        clitic = token == "nt" or (token in _BARE_CLITICS and previous in _CLITIC_HOSTS)
        if out and not glue_next and not clitic and not _NO_SPACE_BEFORE.match(token):
            out.append(" ")
        out.append(word)
        glue_next = token in _NO_SPACE_AFTER
        previous = token
        if token in _SENTENCE_END:
            capitalize_next = True
    return "".join(out)


class _BatchTokenizer(Protocol):
    """The part of spaCy's (untyped, compiled) `Tokenizer` we use."""

    def pipe(self, texts: Iterable[str], batch_size: int = ...) -> Iterator[Doc]: ...


class TextProcessor:
    """Turns raw strings into token lists, the same way at training and at reply time."""

    def __init__(self, settings: TextSettings | None = None) -> None:
        self.settings = settings or TextSettings()
        self._nlp = self._load_pipeline(self.settings.spacy_model)
        # spaCy's tokenizer keeps caches that are not safe to mutate from several threads at once.
        self._lock = threading.Lock()

    @staticmethod
    def _load_pipeline(name: str | None) -> Language:
        import spacy

        if not name:
            return spacy.blank("en")
        try:
            return spacy.load(name, exclude=["parser", "ner", "lemmatizer", "tagger"])
        except OSError as exc:  # a missing model must never trigger a download
            raise SpacyModelMissingError(
                f"spaCy model {name!r} is not installed; unset text.spacy_model to use the "
                "built-in blank English tokenizer"
            ) from exc

    def tokenize(self, text: str) -> list[str]:
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: Iterable[str], batch_size: int = 2000) -> list[list[str]]:
        normalized = [normalize(t, self.settings.lowercase) for t in texts]
        # spaCy types `Language.tokenizer` as any callable; ours is always spaCy's Tokenizer.
        tokenizer = cast(_BatchTokenizer, self._nlp.tokenizer)
        with self._lock:
            return [
                _merge_number_runs([self._token_text(tok) for tok in doc if not tok.is_space])
                for doc in tokenizer.pipe(normalized, batch_size=batch_size)
            ]

    def _token_text(self, token: Token) -> str:
        s = self.settings
        if s.mask_emails and token.like_email:
            return EMAIL
        if s.mask_urls and token.like_url:
            return URL
        # `like_num` alone would also mask words such as "one" or "ten": require a digit.
        if (
            s.mask_numbers
            and _has_digit(token.text)
            and (token.like_num or _looks_numeric(token.text))
        ):
            return NUMBER
        return token.text


def _merge_number_runs(tokens: list[str]) -> list[str]:
    """`<num> - <num> - <num>` (a phone number spaCy split at its hyphens) -> one `<num>`."""
    out: list[str] = []
    for token in tokens:
        if token == NUMBER and len(out) >= 2 and out[-1] in _NUMBER_JOINERS and out[-2] == NUMBER:
            out.pop()
            continue
        out.append(token)
    return out


_NUMBER_JOINERS = {"-", "/", ".", ":"}


def _has_digit(text: str) -> bool:
    return any(ch.isdigit() for ch in text)


def _looks_numeric(text: str) -> bool:
    """Phone numbers and the like (`+1-555-0100`) that spaCy's `like_num` does not flag."""
    digits = sum(ch.isdigit() for ch in text)
    return digits >= 3 and digits * 2 >= len(text)
