import json
from pathlib import Path

import pytest

from eval.blind_judging import main, read_table


def _replies(path: Path) -> Path:
    prompts = [{"category": "small talk", "text": "hi"}, {"category": "feelings", "text": "sad"}]
    decodings = {
        "first": {"replies": ["Hello!", "Why?"]},
        "second": {"replies": ["Hello!", "Cool!"]},
    }
    path.write_text(json.dumps({"prompts": prompts, "decodings": decodings}))
    return path


def _mark(table: Path, marks: dict[str, str]) -> None:
    lines = []
    for line in table.read_text().splitlines():
        for reply, mark in marks.items():
            if f"| {reply} |  |" in line:
                line = line.replace(f"| {reply} |  |", f"| {reply} | {mark} |")
        lines.append(line)
    table.write_text("\n".join(lines) + "\n")


def test_table_hides_the_decodings_and_judges_a_shared_reply_once(tmp_path: Path) -> None:
    table, key = tmp_path / "t.md", tmp_path / "k.json"
    assert (
        main(["table", str(_replies(tmp_path / "r.json")), "--out", str(table), "--key", str(key)])
        == 0
    )
    rows = read_table(table)
    assert sorted(r.reply for r in rows) == ["Cool!", "Hello!", "Why?"]  # "Hello!" once
    assert "first" not in table.read_text() and "second" not in table.read_text()
    hello = next(r.label for r in rows if r.reply == "Hello!")
    assert sorted(json.loads(key.read_text())["1"][hello]) == ["first", "second"]


def test_count_after_judging(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table, key = tmp_path / "t.md", tmp_path / "k.json"
    main(["table", str(_replies(tmp_path / "r.json")), "--out", str(table), "--key", str(key)])
    _mark(table, {"Hello!": "Y", "Why?": "Y", "Cool!": "N"})
    capsys.readouterr()
    args = ["count", "--tables", str(table), "--keys", str(key), "--baseline", "second"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| first | 2 / 2 | 1 | 1 |" in out and "| second | 1 / 2 | 1 | 0 |" in out
    assert "- first: better on 1, worse on 0" in out


def test_an_unjudged_reply_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table, key = tmp_path / "t.md", tmp_path / "k.json"
    main(["table", str(_replies(tmp_path / "r.json")), "--out", str(table), "--key", str(key)])
    capsys.readouterr()
    assert main(["count", "--tables", str(table), "--keys", str(key)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("blind_judging: reply ") and err.count("\n") == 1
    assert main(["count", "--tables", str(tmp_path / "missing.md"), "--keys", str(key)]) == 2
