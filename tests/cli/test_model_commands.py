"""`chatbot train | eval | reply | attention`: happy paths and every bad input (exit 2)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


def test_reply_prints_one_reply_per_text(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path
) -> None:
    code, out, _ = _run(capsys, "reply", str(tiny_model_dir), "hello", "how are you?")
    assert code == 0
    assert out.splitlines() == ["Hi there!", "I am fine, thanks."]
    code, out, _ = _run(capsys, "reply", str(tiny_model_dir), "hello", "--beam", "3")
    assert (code, out) == (0, "Hi there!\n")


@pytest.mark.parametrize("temperature", ["0.01", "100"])
def test_sampling_at_either_end_of_the_temperature_range_replies(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, temperature: str
) -> None:
    for strategy in (["--sample"], ["--rerank", "4"]):
        code, out, err = _run(
            capsys, "reply", str(tiny_model_dir), "hello", *strategy, "--temperature", temperature
        )
        assert (code, err) == (0, "")
        assert len(out.splitlines()) == 1


def test_eval_prints_and_writes_metrics(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "m.json"
    code, out, _ = _run(
        capsys, "eval", str(tiny_model_dir), "--split", "valid", "--out", str(out_file)
    )
    assert code == 0
    metrics = json.loads(out_file.read_text())
    assert metrics == json.loads(out)
    assert metrics["perplexity"] < 1.5 and metrics["bleu"] > 90


def test_attention_writes_a_png(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    png = tmp_path / "attn.png"
    code, out, _ = _run(
        capsys, "attention", str(tiny_model_dir), "what is your name?", "--out", str(png)
    )
    assert code == 0 and "I am a chatbot." in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_writes_a_checkpoint(
    capsys: pytest.CaptureFixture[str], tiny_pairs_file: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "m"
    code, out, _ = _run(
        capsys,
        "train",
        "--data",
        str(tiny_pairs_file),
        "--out",
        str(out_dir),
        "--max-steps",
        "2",
        "--hidden-size",
        "16",
        "--embedding-dim",
        "16",
        "--layers",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    )
    assert code == 0
    assert json.loads(out)["steps"] == 2
    assert (out_dir / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["train", "--data", "/no/such.tsv", "--out", "{tmp}/m"], ["not found"]),
        (["train", "--data", "{tmp}/empty.tsv", "--out", "{tmp}/m"], ["no dialogue pairs"]),
        (["train", "--data", "reddit", "--out", "{tmp}/m"], ["unknown data source"]),
        (["train", "--data", "{tmp}/bad.tsv", "--out", "{tmp}/m"], ["bad.tsv:1"]),
        (["train", "--data", "chatterbot", "--out", "{tmp}/m", "--resume"], ["--resume"]),
        (["train", "--data", "chatterbot", "--out", "{tmp}/m", "--dropout", "3"], ["dropout"]),
        (["eval", "{tmp}/missing"], ["not found"]),
        (["reply", "{tmp}/missing", "hi"], ["not found"]),
        (["reply", "{tmp}/corrupt", "hi"], ["checksum"]),
        (["reply", "{tmp}/incomplete", "hi"], ["vocab.json"]),
        (["reply", "{model}", "   "], ["empty"]),
        (["reply", "{model}", ""], ["empty"]),
        (["reply", "{model}", "hi", "--beam", "0"], ["beam_size"]),
        (["attention", "{model}", "\t"], ["empty"]),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    tiny_model_dir: Path,
    argv: list[str],
    needles: list[str],
) -> None:
    (tmp_path / "empty.tsv").write_text("")
    (tmp_path / "bad.tsv").write_text("no tab here\n")
    corrupt = Path(shutil.copytree(tiny_model_dir, tmp_path / "corrupt"))
    (corrupt / "model.safetensors").write_bytes(b"\0" * 64)
    incomplete = Path(shutil.copytree(tiny_model_dir, tmp_path / "incomplete"))
    (incomplete / "vocab.json").unlink()
    args = [a.format(tmp=tmp_path, model=tiny_model_dir) for a in argv]
    code, _, err = _run(capsys, *args)
    _one_line_error(code, err, *needles)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reply"])
    assert exc.value.code == 2


@pytest.mark.slow  # starts the installed command
def test_installed_command_reports_errors_without_traceback(tmp_path: Path) -> None:
    chatbot = Path(sys.executable).parent / "chatbot"
    result = subprocess.run(
        [str(chatbot), "reply", str(tmp_path / "nothing"), "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "not found" in result.stderr
