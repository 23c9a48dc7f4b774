import json
from pathlib import Path

import pytest

from eval.prompt_replies import main


def _prompts(path: Path) -> Path:
    path.write_text("## small talk\nhello\nhow are you?\n## feelings\ni am sad\n")
    return path


def test_replies_per_decoding_and_seed_reproduce(tiny_model_dir: Path, tmp_path: Path) -> None:
    prompts = _prompts(tmp_path / "prompts.txt")
    sample = json.dumps({"strategy": "sample", "temperature": 5.0})
    loops = json.dumps({"strategy": "sample", "temperature": 5.0, "no_repeat_words": True})
    argv = ["--prompts", str(prompts), "--seeds", "0", "1"]
    argv += ["--decoding", "hot", str(tiny_model_dir), sample]
    argv += ["--decoding", "hot-no-loops", str(tiny_model_dir), loops]
    assert main([*argv, "--out", str(tmp_path / "a.json")]) == 0
    assert main([*argv, "--out", str(tmp_path / "b.json")]) == 0
    a = json.loads((tmp_path / "a.json").read_text())
    b = json.loads((tmp_path / "b.json").read_text())
    assert a == b  # same model, decoding, seed and prompts: the same replies
    assert list(a["decodings"]) == ["hot-s0", "hot-s1", "hot-no-loops-s0", "hot-no-loops-s1"]
    assert [p["category"] for p in a["prompts"]] == ["small talk", "small talk", "feelings"]
    assert a["decodings"]["hot-s0"]["replies"] != a["decodings"]["hot-s1"]["replies"]
    assert a["decodings"]["hot-no-loops-s0"]["settings"]["no_repeat_words"] is True
    assert all(len(d["replies"]) == 3 for d in a["decodings"].values())


@pytest.mark.parametrize(
    ("decoding", "expected"),
    [
        (["x"], "--decoding NAME MODEL_DIR [JSON]"),
        (["x", "{model}", "[1]"], "JSON object"),
        (["x", "{model}", '{"temperature": 0}'], "temperature"),
        (["x", "{model}", "{nope"], "Expecting property name"),
        (["x", "/nonexistent/model"], "/nonexistent/model"),
    ],
)
def test_bad_decodings_are_one_line_and_exit_2(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    decoding: list[str],
    expected: str,
) -> None:
    words = [w.replace("{model}", str(tiny_model_dir)) for w in decoding]
    argv = ["--prompts", str(_prompts(tmp_path / "p.txt")), "--out", str(tmp_path / "r.json")]
    assert main([*argv, "--decoding", *words]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "r.json").exists()
