"""Replies to a fixed prompt set, side by side, for a person to judge.

Automatic metrics say how varied and how likely replies are, not whether they make sense; that
takes a reader. The prompt file is committed before the models it judges are trained (so nobody
picks prompts a model happens to answer well): one prompt a line, `#` comments, `## name` lines
starting a category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nlp.errors import DataError


@dataclass(frozen=True)
class Prompt:
    category: str
    text: str


def read_prompts(path: Path) -> list[Prompt]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read prompts {path}: {exc}") from exc
    prompts, category = [], ""
    for line in lines:
        if line.startswith("## "):
            category = line[3:].strip()
        elif line.strip() and not line.startswith("#"):
            prompts.append(Prompt(category, line.strip()))
    if not prompts:
        raise DataError(f"no prompts in {path}")
    return prompts


def side_by_side(
    prompts: Sequence[Prompt], columns: Sequence[tuple[str, Sequence[str]]], title: str
) -> str:
    """A markdown table: one row per prompt, one column of replies per model or setting."""
    for name, replies in columns:
        if len(replies) != len(prompts):
            raise ValueError(f"{name}: {len(replies)} replies for {len(prompts)} prompts")
    head = ["#", "category", "prompt", *(f"{name}" for name, _ in columns)]
    rows = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for i, prompt in enumerate(prompts):
        cells = [str(i + 1), prompt.category, _cell(prompt.text)]
        cells += [_cell(replies[i]) for _, replies in columns]
        rows.append("| " + " | ".join(cells) + " |")
    return f"# {title}\n\n" + "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "(empty)"
