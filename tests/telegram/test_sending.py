"""Replies longer than Telegram's 4,096 characters are split; Telegram counts UTF-16 units."""

from __future__ import annotations

from telegram import Bot

from bot.telegram.feedback import feedback_keyboard
from bot.telegram.sending import send_text, split_message, utf16_length
from tests.support.fake_telegram import FakeTelegram
from tests.telegram.harness import ANN, buttons


def test_a_short_text_is_one_piece() -> None:
    assert split_message("hello there") == ["hello there"]
    assert split_message("x" * 4096) == ["x" * 4096]


def test_a_long_text_is_cut_at_spaces_into_pieces_that_fit() -> None:
    words = [f"word{i}" for i in range(1500)]
    text = " ".join(words)

    pieces = split_message(text)

    assert len(pieces) == 4
    assert all(utf16_length(p) <= 4096 for p in pieces)
    assert " ".join(pieces).split() == words  # no word lost, none cut in half


def test_a_line_break_is_preferred_to_a_space() -> None:
    text = "a" * 3000 + "\n" + "b " * 1000

    first, *_ = split_message(text)

    assert first == "a" * 3000


def test_emoji_count_twice_and_are_never_cut_in_half() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 units, no space to cut at

    pieces = split_message(text)

    assert [utf16_length(p) for p in pieces] == [4096, 6000 - 4096]
    assert "".join(pieces) == text


async def test_a_long_reply_arrives_in_pieces_with_the_buttons_under_the_last(
    fake: FakeTelegram,
) -> None:
    fake.say(ANN, "hi")  # the chat exists
    text = " ".join(f"word{i}" for i in range(1500))
    async with Bot(fake.token, base_url=fake.base_url) as bot:
        last = await send_text(bot, ANN["id"], text, reply_markup=feedback_keyboard(7))

    sent = fake.sent(ANN["id"])
    assert len(sent) == 4
    assert " ".join(m["text"] for m in sent) == text
    assert [bool(buttons(m)) for m in sent] == [False, False, False, True]
    assert last is not None and last.message_id == sent[-1]["message_id"]
