from nlp.metrics import (
    bleu,
    distinct_n,
    generic_reply_rate,
    mean_length,
    reply_metrics,
    top_reply_share,
)


def test_distinct_n() -> None:
    assert distinct_n([["a", "b"], ["a", "c"]], 1) == 3 / 4
    assert distinct_n([["a", "b"], ["a", "b"]], 2) == 1 / 2
    assert distinct_n([], 1) == 0.0


def test_generic_reply_rate_counts_the_most_frequent_replies() -> None:
    replies = ["i don't know"] * 8 + [f"reply {i}" for i in range(20)]
    assert generic_reply_rate(replies, top=1) == 8 / 28
    assert generic_reply_rate([f"r{i}" for i in range(10)], top=10) == 1.0


def test_bleu_and_mean_length() -> None:
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) > 99
    assert bleu(["completely different words here"], ["the cat sat on the mat"]) < 10
    assert mean_length([["a"], ["a", "b", "c"]]) == 2.0
    assert set(reply_metrics([["a"]], [["a"]])) == {
        "distinct_1",
        "distinct_2",
        "generic_reply_rate",
        "top_reply_share",
        "mean_reply_length",
        "bleu",
    }


def test_top_reply_share_is_the_most_frequent_reply_s_share() -> None:
    assert top_reply_share(["yes", "no", "yes", "ok"]) == 0.5
    assert top_reply_share(["a", "b"]) == 0.5
    assert top_reply_share([]) == 0.0
