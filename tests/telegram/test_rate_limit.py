"""Per-user flood limit: a friendly "slow down" once, and nothing else for the extra messages."""

from __future__ import annotations

from bot import answers
from bot.telegram.rate_limit import Decision, SlidingWindowLimiter
from tests.telegram.harness import ANN, BOB


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_window_admits_n_then_warns_once_then_drops() -> None:
    limiter = SlidingWindowLimiter(3, 60.0, clock=Clock())

    decisions = [limiter.decide(1) for _ in range(6)]

    assert decisions == [Decision.ALLOW] * 3 + [Decision.WARN] + [Decision.DROP] * 2


def test_the_window_slides_and_refused_messages_do_not_count() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(2, 60.0, clock=clock)
    limiter.decide(1)
    clock.now += 30
    limiter.decide(1)
    assert limiter.decide(1) is Decision.WARN

    clock.now += 30  # the first message leaves the window; the refused one never entered it
    assert limiter.decide(1) is Decision.ALLOW
    assert limiter.decide(1) is Decision.WARN  # a new burst is warned about again


def test_people_are_limited_separately_and_zero_turns_limiting_off() -> None:
    limiter = SlidingWindowLimiter(1, 60.0, clock=Clock())
    assert [limiter.decide(1), limiter.decide(2), limiter.decide(1)] == [
        Decision.ALLOW,
        Decision.ALLOW,
        Decision.WARN,
    ]
    off = SlidingWindowLimiter(0, 60.0, clock=Clock())
    assert {off.decide(1) for _ in range(100)} == {Decision.ALLOW}


def test_idle_people_are_forgotten() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(1, 10.0, clock=clock)
    limiter.decide(1)
    clock.now += 11
    limiter.decide(2)

    limiter.forget_idle()

    assert limiter.decide(1) is Decision.ALLOW
    assert limiter.decide(2) is Decision.WARN  # still inside its window: kept


async def test_a_flood_gets_one_slow_down_and_only_admitted_messages_are_stored(
    start_bot,
) -> None:
    async with start_bot(rate_limit_messages=3, rate_limit_seconds=60) as bot:
        texts = ["hello", "how are you?", "bye", "thank you", "good night"]
        for text in texts:
            bot.fake.say(ANN, text)
        await bot.fake.wait_for_message(ANN["id"], 4)
        bot.fake.say(BOB, "hello")  # someone else is not slowed down
        await bot.fake.wait_for_message(BOB["id"])
        await bot.settle()

        sent = [m["text"] for m in bot.fake.sent(ANN["id"])]
        assert len(sent) == 4
        assert sent.count(answers.SLOW_DOWN) == 1
        stored = [t.text for t in bot.turns(ANN["id"]) if not t.from_bot]
        assert stored == texts[:3]
        assert len(bot.fake.calls_to("sendChatAction")) == 4  # 3 for Ann, 1 for Bob
