"""`chatbot eval`: metrics at several set sizes, the same pairs for two recipes, prompt tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from config import DecodingSettings
from nlp.checkpoint import load_checkpoint, save_checkpoint
from nlp.evaluation import evaluate_checkpoint
from nlp.prompt_eval import read_prompts


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_metrics_are_reported_at_each_set_size(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "m.json"
    code, _, _ = _run(
        capsys,
        "eval",
        str(tiny_model_dir),
        "--split",
        "train",
        "--sizes",
        "1,5,20",
        "--out",
        str(out_file),
    )
    metrics = json.loads(out_file.read_text())
    assert code == 0 and set(metrics["sizes"]) == {"1", "5", "20"}
    assert metrics["sizes"]["1"]["pairs"] == 1 and metrics["sizes"]["20"]["pairs"] == 20
    assert metrics["sizes"]["1"]["top_reply_share"] == 1.0  # one reply is its own top reply
    assert metrics["sizes"]["20"]["top_reply_share"] == pytest.approx(1 / 20)  # all different


def test_sizes_are_prefixes_of_one_decode(tiny_model_dir: Path) -> None:
    """The sampled replies are decoded once: the full-size entry is the whole result, and a
    size past the split is capped at the pairs there are."""
    sampling = DecodingSettings(strategy="sample", temperature=1.0)
    metrics = evaluate_checkpoint(tiny_model_dir, "train", sampling, limit=20, sizes=(5, 20, 99))
    whole = {k: v for k, v in metrics.items() if k in metrics["sizes"]["20"]}
    assert metrics["sizes"]["20"] == whole
    assert metrics["sizes"]["99"]["pairs"] == 20
    assert metrics["sizes"]["5"]["pairs"] == 5


def test_two_recipes_are_scored_on_the_same_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A model reading two turns and one reading one turn are scored on the same replies."""
    checkpoint = load_checkpoint(tiny_model_dir)
    checkpoint.recipe = checkpoint.recipe.model_copy(update={"context_turns": 2, "max_length": 3})
    other = save_checkpoint(tmp_path / "short", checkpoint)
    own = evaluate_checkpoint(other, "train")
    same = evaluate_checkpoint(other, "train", pairs_like=tiny_model_dir)
    baseline = evaluate_checkpoint(tiny_model_dir, "train")
    assert own["pairs"] < baseline["pairs"]  # its own length filter keeps fewer pairs
    assert same["pairs"] == baseline["pairs"]


def test_prompt_table_compares_two_decoding_settings(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# judged by a reader\n## greetings\nhello\n## bot\nwho made you?\n")
    table = tmp_path / "table.md"
    code, out, _ = _run(
        capsys,
        "eval",
        str(tiny_model_dir),
        "--prompts",
        str(prompts),
        "--compare-decoding",
        '{"strategy": "beam", "beam_size": 3}',
        "--out",
        str(table),
    )
    assert code == 0 and "2 prompts, 2 column(s)" in out
    lines = table.read_text().splitlines()
    assert lines[2].startswith("| # | category | prompt | tiny (greedy) | tiny (")
    assert lines[4] == "| 1 | greetings | hello | Hi there! | Hi there! |"
    assert lines[5].startswith("| 2 | bot | who made you? | A small team of engineers.")


def test_the_compared_decoding_loads_its_own_reverse_model(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    """The second column decodes with everything its settings load: a reverse model named there
    is read (here refused: the tiny model is a forward model), never silently left out."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("hello\n")
    code, _, err = _run(
        capsys,
        "eval",
        str(tiny_model_dir),
        "--prompts",
        str(prompts),
        "--greedy",
        "--compare-decoding",
        json.dumps({"strategy": "rerank", "mmi_reverse_dir": str(tiny_model_dir)}),
        "--out",
        str(tmp_path / "table.md"),
    )
    assert code == 2 and "MMI needs a reverse model" in err
    assert len(err.strip().splitlines()) == 1


def test_prompt_table_compares_two_models(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("bye\n")
    table = tmp_path / "table.md"
    code, _, _ = _run(
        capsys,
        "eval",
        str(tiny_model_dir),
        "--prompts",
        str(prompts),
        "--compare",
        str(tiny_model_dir),
        "--out",
        str(table),
    )
    assert code == 0
    assert table.read_text().splitlines()[-1] == (
        "| 1 |  | bye | Goodbye, see you soon! | Goodbye, see you soon! |"
    )


def test_the_committed_prompt_set_has_a_hundred_prompts_in_five_categories() -> None:
    prompts = read_prompts(Path(__file__).resolve().parents[2] / "eval" / "prompts.txt")
    assert len(prompts) >= 100
    assert {p.category for p in prompts} == {
        "small talk",
        "questions about the bot",
        "feelings",
        "plans",
        "opinions",
        "unknown words",
    }


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--sizes", "4,x"], "--sizes must be numbers"),
        (["--sizes", "0"], "--sizes must be positive"),
        (["--compare-decoding", "{}"], "need --prompts"),
        (["--out", "/no/such/dir/m.json"], "does not exist"),
        (["--prompts", "/no/such/prompts.txt"], "cannot read prompts"),
    ],
)
def test_bad_eval_options_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tiny_model_dir: Path, argv: list[str], needle: str
) -> None:
    code, _, err = _run(capsys, "eval", str(tiny_model_dir), *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err
