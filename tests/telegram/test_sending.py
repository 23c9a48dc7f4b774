"""Replies longer than Telegram's 4,096 characters are split; Telegram counts UTF-16 units."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.telegram.feedback import feedback_keyboard
from bot.telegram.outgoing import queue
from bot.telegram.sending import split_message, utf16_length
from storage import outbox
from storage.outbox import OutgoingMessage
from tests.support.fake_telegram import updates as tg
from tests.telegram.harness import ANN, Harness, buttons


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


async def test_a_long_message_arrives_in_pieces_with_the_buttons_under_the_last(
    bot: Harness,
) -> None:
    bot.fake.chats[ANN["id"]] = tg.private_chat(ANN)  # a chat the bot may write to
    text = " ".join(f"word{i}" for i in range(1500))

    await queue(bot.bot.state, ANN["id"], text, reply_markup=feedback_keyboard(7))
    sent = await bot.fake.wait_for_message(ANN["id"], 4)
    await bot.settle()

    assert len(bot.fake.sent(ANN["id"])) == 4
    assert " ".join(m["text"] for m in sent) == text
    assert [bool(buttons(m)) for m in sent] == [False, False, False, True]


async def test_a_message_cut_short_by_a_crash_goes_on_from_the_first_piece_not_sent(
    bot: Harness,
) -> None:
    bot.fake.chats[ANN["id"]] = tg.private_chat(ANN)
    text = " ".join(f"word{i}" for i in range(1500))
    pieces = split_message(text)

    def queued_half_sent(session: Session) -> None:
        queued = outbox.enqueue(session, OutgoingMessage("telegram", ANN["id"], text))
        assert queued is not None
        outbox.record_progress(session, queued, 2)  # what a process killed after two recorded

    bot.app.db.transact(queued_half_sent)
    bot.bot.sender.wake()
    sent = await bot.fake.wait_for_message(ANN["id"], 2)
    await bot.settle()

    assert [m["text"] for m in bot.fake.sent(ANN["id"])] == pieces[2:]
    assert [m["text"] for m in sent] == pieces[2:]
