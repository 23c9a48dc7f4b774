import pytest

from config import TextSettings
from nlp.text import EMAIL, NUMBER, URL, TextProcessor, detokenize, normalize


@pytest.fixture(scope="module")
def processor() -> TextProcessor:
    return TextProcessor()


def test_normalize_folds_unicode_controls_and_whitespace() -> None:
    assert normalize("  Ｈｅｌｌｏ\u200b\x00  WORLD\t\n ") == "hello world"
    assert normalize("Café", lowercase=False) == "Café"


def test_contractions_split_and_detokenize_back(processor: TextProcessor) -> None:
    tokens = processor.tokenize("I'm fine, don't worry!")
    assert tokens == ["i", "'m", "fine", ",", "do", "n't", "worry", "!"]
    assert detokenize(tokens) == "I'm fine, don't worry!"


def test_detokenize_example_from_the_spec() -> None:
    assert detokenize(["i", "'m", "fine", "."]) == "I'm fine."
    assert detokenize(["what", "s", "up", "?", "is", "it", "?"]) == "Whats up? Is it?"


def test_masks_emails_urls_and_numbers(processor: TextProcessor) -> None:
    tokens = processor.tokenize("mail bob@example.com, see https://example.org or call +1-555-0100")
    assert EMAIL in tokens and URL in tokens and NUMBER in tokens
    assert "bob@example.com" not in tokens and "0100" not in " ".join(tokens)
    assert tokens.count(NUMBER) == 1  # the phone number is one placeholder


def test_number_words_are_not_masked(processor: TextProcessor) -> None:
    assert processor.tokenize("one of ten") == ["one", "of", "ten"]


def test_masking_can_be_turned_off() -> None:
    plain = TextProcessor(TextSettings(mask_emails=False, mask_urls=False, mask_numbers=False))
    assert plain.tokenize("call 555 1234") == ["call", "555", "1234"]


def test_missing_spacy_model_is_a_clear_error_not_a_download() -> None:
    with pytest.raises(ValueError, match="not installed"):
        TextProcessor(TextSettings(spacy_model="xx_no_such_model"))
