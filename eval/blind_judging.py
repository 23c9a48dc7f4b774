"""Blind judging of prompt replies: which decoding a reply came from stays hidden until counted.

    python -m eval.blind_judging table REPLIES.json --out TABLE.md --key KEY.json [--seed N]
        [--decodings NAME ...] [--first-label a] [--judged EARLIER.md ...]
    python -m eval.blind_judging count --tables T.md ... --keys K.json ... [--baseline NAME]

`table` lists, per prompt, the distinct replies of every decoding in REPLIES.json in a seeded
random order, labelled `12a`, `12b`, ... (a reply two decodings share is judged once, so the same
reply never gets two marks); the key (label -> decodings) goes to its own file, opened only after
judging. Replies already in an `--judged` table are left out (a later pass adds decodings without
judging a reply twice) and keep that table's label in the key. The reader writes Y or N in the
last column. `count` joins the marked tables and the keys: sensible replies per decoding and per
category, and per prompt against a baseline decoding (better on / worse on, sign test).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_ROW = re.compile(r"^\| (\d+)([a-zA-Z]) \| (.*) \| (.*) \| (.*) \| (.*) \|$")


@dataclass(frozen=True)
class Row:
    """One judged (or to-be-judged) reply of a blind table."""

    prompt: int  # 1-based prompt number
    label: str  # e.g. "12a"
    category: str
    text: str
    reply: str
    mark: str  # "Y", "N" or "" (not judged yet)


@dataclass(frozen=True)
class Replies:
    """REPLIES.json: the prompts and, per decoding, its settings and one reply per prompt."""

    categories: list[str]
    prompts: list[str]
    decodings: dict[str, list[str]]

    @classmethod
    def read(cls, path: Path, only: list[str] | None = None) -> Replies:
        """`only`: these decodings, in this order (default: all of the file's)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        prompts = data["prompts"]
        given = data["decodings"]
        unknown = [name for name in only or [] if name not in given]
        if unknown:
            raise ValueError(f"{path}: no decoding {', '.join(unknown)}")
        decodings = {name: given[name]["replies"] for name in only or given}
        for name, replies in decodings.items():
            if len(replies) != len(prompts):
                raise ValueError(f"{name}: {len(replies)} replies for {len(prompts)} prompts")
        return cls([p["category"] for p in prompts], [p["text"] for p in prompts], decodings)


def read_table(path: Path) -> list[Row]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            number, letter, category, text, reply, mark = m.groups()
            rows.append(Row(int(number), number + letter, category, text, reply, mark.strip()))
    if not rows:
        raise ValueError(f"{path}: no table rows")
    return rows


def blind_table(
    replies: Replies, seed: int, first_label: str, judged: list[Row]
) -> tuple[list[Row], dict[str, dict[str, list[str]]]]:
    """The rows to judge and the key {prompt number: {label: [decodings]}}."""
    earlier = {(r.prompt, r.reply): r.label for r in judged}
    rng = random.Random(seed)
    rows: list[Row] = []
    key: dict[str, dict[str, list[str]]] = {}
    for i, (category, text) in enumerate(zip(replies.categories, replies.prompts, strict=True)):
        n = i + 1
        given = {name: _escape(r[i]) for name, r in replies.decodings.items()}
        new = sorted({reply for reply in given.values() if (n, reply) not in earlier})
        rng.shuffle(new)
        labels = {reply: f"{n}{chr(ord(first_label) + j)}" for j, reply in enumerate(new)}
        labels |= {reply: earlier[(n, reply)] for reply in given.values() if (n, reply) in earlier}
        rows += [Row(n, labels[reply], category, text, reply, "") for reply in new]
        key[str(n)] = {}
        for name, reply in given.items():
            key[str(n)].setdefault(labels[reply], []).append(name)
    return rows, key


def _escape(reply: str) -> str:
    return reply.replace("|", "\\|").replace("\n", " ") or "(empty)"


def render_table(rows: list[Row]) -> str:
    lines = ["| # | category | prompt | reply | judged |", "|---|---|---|---|---|"]
    lines += [f"| {r.label} | {r.category} | {r.text} | {r.reply} | {r.mark} |" for r in rows]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Counts:
    sensible: dict[str, int]  # decoding -> Y count
    by_category: dict[str, Counter[str]]  # decoding -> category -> Y count
    category_sizes: Counter[str]
    marks: dict[str, dict[int, str]]  # decoding -> prompt -> Y/N


def count(rows: list[Row], key: dict[str, dict[str, list[str]]]) -> Counts:
    mark = {r.label: r.mark for r in rows}
    category = {r.prompt: r.category for r in rows}
    marks: dict[str, dict[int, str]] = {}
    for number, labels in key.items():
        for label, names in labels.items():
            if mark.get(label) not in ("Y", "N"):
                raise ValueError(f"reply {label} has no Y/N mark")
            for name in names:
                marks.setdefault(name, {})[int(number)] = mark[label]
    by_category = {
        name: Counter(category[n] for n, m in per.items() if m == "Y")
        for name, per in marks.items()
    }
    return Counts(
        {name: sum(m == "Y" for m in per.values()) for name, per in marks.items()},
        by_category,
        Counter(category[int(n)] for n in key),
        marks,
    )


def sign_test(better: int, worse: int) -> float:
    """Two-sided exact sign test over the prompts where two decodings' marks differ."""
    n, k = better + worse, min(better, worse)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def report(counts: Counts, baseline: str | None) -> str:
    categories = list(counts.category_sizes)
    total = sum(counts.category_sizes.values())
    head = ["decoding", "sensible", *(f"{c} ({counts.category_sizes[c]})" for c in categories)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in sorted(counts.sensible):
        cells = [name, f"{counts.sensible[name]} / {total}"]
        cells += [str(counts.by_category[name][c]) for c in categories]
        lines.append("| " + " | ".join(cells) + " |")
    if baseline is not None:
        base = counts.marks[baseline]
        lines += ["", f"Per prompt against {baseline}:", ""]
        for name in sorted(counts.marks):
            if name == baseline:
                continue
            per = counts.marks[name]
            better = sum(per[n] == "Y" and base[n] == "N" for n in per)
            worse = sum(per[n] == "N" and base[n] == "Y" for n in per)
            p = sign_test(better, worse)
            lines.append(f"- {name}: better on {better}, worse on {worse} (sign test p = {p:.2f})")
    return "\n".join(lines) + "\n"


def _joined_keys(paths: list[Path]) -> dict[str, dict[str, list[str]]]:
    """The keys of several passes as one (a later pass names earlier labels again)."""
    key: dict[str, dict[str, list[str]]] = {}
    for path in paths:
        for number, labels in json.loads(path.read_text(encoding="utf-8")).items():
            for label, names in labels.items():
                known = key.setdefault(number, {}).setdefault(label, [])
                known += [name for name in names if name not in known]
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.blind_judging", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("table", help="a blind table to judge and its key")
    t.add_argument("replies", type=Path)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--key", type=Path, required=True)
    t.add_argument("--seed", type=int, default=20261126)
    t.add_argument("--decodings", nargs="+", help="these of the file's decodings (default: all)")
    t.add_argument("--first-label", default="a")
    t.add_argument("--judged", type=Path, nargs="*", default=[])
    c = commands.add_parser("count", help="sensible replies per decoding, after judging")
    c.add_argument("--tables", type=Path, nargs="+", required=True)
    c.add_argument("--keys", type=Path, nargs="+", required=True)
    c.add_argument("--baseline")
    args = parser.parse_args(argv)
    try:
        if args.command == "table":
            judged = [row for path in args.judged for row in read_table(path)]
            rows, key = blind_table(
                Replies.read(args.replies, args.decodings), args.seed, args.first_label, judged
            )
            args.out.write_text(render_table(rows), encoding="utf-8")
            args.key.write_text(json.dumps(key, indent=1) + "\n", encoding="utf-8")
            print(f"{len(rows)} replies to judge: {args.out} (key: {args.key})")
        else:
            rows = [row for path in args.tables for row in read_table(path)]
            counts = count(rows, _joined_keys(args.keys))
            if args.baseline is not None and args.baseline not in counts.marks:
                raise ValueError(f"no decoding {args.baseline!r} in the keys")
            print(report(counts, args.baseline), end="")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"blind_judging: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
