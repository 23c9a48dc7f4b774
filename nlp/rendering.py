"""A reply's tokens -> the text a person reads, with placeholders put into plain words.

The model says `<num>`, `<url>` and `<email>` where its training text had a number, a link or an
address (masked by `nlp.text`). A reply shows none of them as a symbol ("#", "(link)"), and never
a real number or address: a placeholder reads as a vague phrase that fits most sentences it
appears in ("i have <num> cats" -> "I have a few cats", "see <url>" -> "See a link").
"""

from __future__ import annotations

from collections.abc import Sequence

from nlp.text import EMAIL, NUMBER, PLACEHOLDERS, URL, detokenize

PLACEHOLDER_WORDS = {NUMBER: "a few", URL: "a link", EMAIL: "my e-mail"}
# Symbols that only make sense glued to a number: "$ <num>" -> "a few", not "$a few".
_NUMBER_PREFIXES = {"#", "$", "£", "€", "+", "~", "№"}
# "<num> - <num>" (a range, a score, a time) reads as one vague phrase.
_JOINERS = {"-", "–", "/", ":"}


def render(tokens: Sequence[str]) -> str:
    """Model tokens -> display text: `i 'm <num> .` -> `I'm a few.`"""
    return detokenize(natural_tokens(tokens))


def natural_tokens(tokens: Sequence[str]) -> list[str]:
    """Placeholders replaced by their words; repeated or joined placeholders said once, symbols
    glued to a number dropped, and "%" after one spelled out."""
    out: list[str] = []
    for token in tokens:
        if token in PLACEHOLDERS:
            if out and out[-1] == token:
                continue
            if len(out) >= 2 and out[-1] in _JOINERS and out[-2] == token:
                out.pop()
                continue
            if token == NUMBER:
                while out and out[-1] in _NUMBER_PREFIXES:
                    out.pop()
        elif token == "%" and out and out[-1] == NUMBER:
            token = "percent"
        out.append(token)
    return [PLACEHOLDER_WORDS.get(token, token) for token in out]
