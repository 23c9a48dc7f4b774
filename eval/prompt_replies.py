"""Replies to the committed prompt set, per decoding and seed, in the file blind judging reads.

    python -m eval.prompt_replies --prompts eval/prompts.txt --out REPLIES.json --seeds 0 1 2 \
        --decoding NAME MODEL_DIR ['{"no_repeat_words": true}'] [--decoding ...]

Each decoding is a model with its shipped decoding (`decoding.json`, or the settings' defaults
where it has none), changed by the JSON's fields; its replies to every prompt, decoded in one
batch as `chatbot eval --prompts` does, are stored once per seed as `NAME-sSEED`. The same model,
decoding, seed and prompts give the same replies, so a judged table can be checked against them.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config import DecodingSettings
from nlp.decoding_recipe import changed_decoding, recommended_decoding
from nlp.errors import NlpError
from nlp.prompt_eval import Prompt, read_prompts
from nlp.responder import Responder


@dataclass(frozen=True)
class Decoding:
    name: str
    model: Path
    changes: str  # a JSON object of DecodingSettings fields

    @classmethod
    def parse(cls, words: list[str]) -> Decoding:
        if len(words) not in (2, 3):
            raise ValueError(f"--decoding NAME MODEL_DIR [JSON], not {' '.join(words)!r}")
        return cls(words[0], Path(words[1]), words[2] if len(words) == 3 else "{}")

    def settings(self) -> DecodingSettings:
        shipped = recommended_decoding(self.model) or DecodingSettings()
        return changed_decoding(shipped, self.changes)


def replies(
    prompts: list[Prompt], decodings: list[Decoding], seeds: list[int]
) -> dict[str, dict[str, Any]]:
    """{NAME-sSEED: {"settings", "produced_by", "replies"}} in the order given."""
    out: dict[str, dict[str, Any]] = {}
    for decoding in decodings:
        settings = decoding.settings()
        responder = Responder(decoding.model, settings)
        for seed in seeds:
            responder.reseed(seed)
            out[f"{decoding.name}-s{seed}"] = {
                "settings": {
                    **settings.model_dump(mode="json", exclude_defaults=True),
                    "seed": seed,
                },
                "produced_by": f"python -m eval.prompt_replies: {decoding.model} with its "
                f"decoding.json changed by {decoding.changes}, seed {seed}",
                "replies": responder.reply([p.text for p in prompts]),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.prompt_replies", description=__doc__)
    parser.add_argument("--prompts", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--decoding", nargs="+", action="append", required=True, metavar="NAME MODEL [JSON]"
    )
    args = parser.parse_args(argv)
    try:
        decodings = [Decoding.parse(words) for words in args.decoding]
        prompts = read_prompts(args.prompts)
        table = replies(prompts, decodings, args.seeds)
    except (ValueError, OSError, NlpError) as exc:
        print(f"prompt_replies: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    document = {
        "models": sorted({str(d.model) for d in decodings}),
        "prompts": [{"category": p.category, "text": p.text} for p in prompts],
        "decodings": table,
    }
    args.out.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
