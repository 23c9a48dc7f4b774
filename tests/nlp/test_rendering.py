import re

import pytest

from nlp.rendering import PLACEHOLDER_WORDS, natural_tokens, render
from nlp.text import EMAIL, NUMBER, PLACEHOLDERS, URL


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        (["i", "have", NUMBER, "cats", "."], "I have a few cats."),
        (["see", URL, "."], "See a link."),
        (["write", "to", EMAIL, "!"], "Write to my e-mail!"),
        ([NUMBER], "A few"),
        ([URL, "."], "A link."),
    ],
)
def test_placeholders_read_as_plain_words(tokens: list[str], text: str) -> None:
    assert render(tokens) == text


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        ([NUMBER, NUMBER], "A few"),
        (["it", "was", NUMBER, "-", NUMBER, "."], "It was a few."),
        (["at", NUMBER, ":", NUMBER], "At a few"),
        (["only", "$", NUMBER], "Only a few"),
        (["#", NUMBER, "!"], "A few!"),
        (["it", "is", NUMBER, "%", "."], "It is a few percent."),
        (["a", "-", "b", NUMBER], "A - b a few"),  # a joiner between words stays
    ],
)
def test_numbers_run_together_are_said_once_without_their_symbols(
    tokens: list[str], text: str
) -> None:
    assert render(tokens) == text


def test_a_reply_never_shows_a_placeholder_or_its_symbol() -> None:
    pieces = [*PLACEHOLDERS, "#", "$", "-", ".", "%", "hi"]
    for a in pieces:
        for b in pieces:
            for c in pieces:
                text = render([a, b, c])
                assert "<" not in text and "(link)" not in text and "(e-mail)" not in text
                if "#" not in (a, b, c):
                    assert "#" not in text, (a, b, c)
                assert not re.search(r"\d", text)


def test_words_other_than_placeholders_pass_through() -> None:
    tokens = ["i", "'m", "fine", ",", "thanks", "."]
    assert natural_tokens(tokens) == tokens
    assert render(tokens) == "I'm fine, thanks."
    assert set(PLACEHOLDER_WORDS) == set(PLACEHOLDERS)
