"""Recipe sweep: train several data recipes / sizes side by side and score them on the SAME pairs.

Two steps, so the training machine (a GPU box, or the same CPU) needs no spaCy and no corpus:

    python -m eval.sweep prepare --out runs/sweep-data        # here: tokenise every variant
    python -m eval.sweep train --data runs/sweep-data --out runs/sweep --steps 20000

`prepare` writes, for each variant, its training and validation pairs and the comparison pairs:
the test pairs of the first shipped model's recipe (chitchat, one turn, replies of at most 20
words), read with the variant's own context rule. `train` trains every variant in its own process
(all at once), validates every `--validate-every` steps, and writes `summary.json`: the per-word
test perplexity on the comparison pairs (total negative log-likelihood over the words of the
replies plus their end marker, so word and subword models compare), and the greedy reply metrics
at three set sizes. The shipped model is then trained by `make train-default` with the winner.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import math
import multiprocessing
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("sweep")
SELECTION = {"sources": ["chitchat"], "context_turns": 1, "max_length": 20}  # today's test pairs
SIZES = (40, 300, 3000)


@dataclass(frozen=True)
class Variant:
    name: str
    context_turns: int = 1
    max_length: int = 20
    hidden_size: int = 256
    subword: bool = False
    reverse: bool = False
    # Share of --steps: bigger models get fewer, for equal CPU time (training FLOPs per pair at
    # two turns of context: h384 2.0x, h512 3.4x those of h256).
    step_share: float = 1.0
    dropout: float = 0.2

    @property
    def data(self) -> str:
        """The name of its prepared data: variants that differ only in size share it."""
        kind = "sp" if self.subword else "w"
        return f"{kind}{self.max_length}-c{self.context_turns}{'-rev' if self.reverse else ''}"


VARIANTS = (
    Variant("w20-c1-h256"),
    Variant("w40-c1-h256", max_length=40),
    Variant("w30-c2-h256", context_turns=2, max_length=30),
    Variant("w40-c2-h256", context_turns=2, max_length=40),
    Variant("w40-c3-h256", context_turns=3, max_length=40),
    Variant("sp40-c2-h256", context_turns=2, max_length=48, subword=True),
    Variant("w40-c2-h384", context_turns=2, max_length=40, hidden_size=384, step_share=0.5),
    Variant("w40-c2-h512", context_turns=2, max_length=40, hidden_size=512, step_share=0.3),
    Variant("w40-c2-h256-rev", context_turns=2, max_length=40, reverse=True),
)


# ---- prepare (needs spaCy and the corpus) -------------------------------------------------------


def prepare(out: Path, names: list[str] | None) -> None:
    from nlp.datasets import tokenized_splits
    from nlp.recipe import DataRecipe
    from nlp.text import TextProcessor

    out.mkdir(parents=True, exist_ok=True)
    processor = TextProcessor()
    selection = DataRecipe.model_validate(SELECTION)
    for variant in VARIANTS:
        if (names and variant.name not in names) or (out / f"{variant.data}.json.gz").exists():
            continue
        recipe = DataRecipe(
            sources=("chitchat",),
            context_turns=variant.context_turns,
            max_length=40 if variant.subword else variant.max_length,
            direction="reverse" if variant.reverse else "forward",
        )
        splits = tokenized_splits(recipe, processor)
        same = tokenized_splits(recipe, processor, selection)["test"]
        data = {
            "recipe": recipe.model_dump(mode="json"),
            "train": [[p.context, p.reply] for p in splits["train"]],
            "valid": [[p.context, p.reply] for p in splits["valid"]],
            "test_same": [[p.context, p.reply] for p in same],
        }
        if variant.subword:
            data = _to_subwords(data, out / f"{variant.data}.spm", variant.max_length)
        with gzip.open(out / f"{variant.data}.json.gz", "wt", encoding="utf-8") as f:
            json.dump(data, f)
        print(variant.name, {k: len(v) for k, v in data.items() if isinstance(v, list)})


def _to_subwords(data: dict[str, Any], model_path: Path, max_length: int) -> dict[str, Any]:
    """Pieces of a unigram sentencepiece model trained on the training split only; `<sep>` and
    the placeholders stay whole. Replies keep their word count for per-word perplexity."""
    import io

    import sentencepiece as spm

    from nlp.text import PLACEHOLDERS
    from nlp.vocabulary import SEP

    def turns(tokens: list[str]) -> list[list[str]]:
        out: list[list[str]] = [[]]
        for tok in tokens:
            out.append([]) if tok == SEP else out[-1].append(tok)
        return out

    lines = {" ".join(t) for c, r in data["train"] for t in (*turns(c), r) if t}
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sorted(lines)),
        model_writer=buffer,
        vocab_size=8000,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=True,
        user_defined_symbols=list(PLACEHOLDERS),
        minloglevel=2,
    )
    model_path.write_bytes(buffer.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buffer.getvalue())

    def pieces(tokens: list[str]) -> list[str]:
        out: list[str] = []
        for turn in turns(tokens):
            if turn:
                out.extend([*([SEP] if out else []), *sp.encode(" ".join(turn), out_type=str)])
        return out

    converted: dict[str, Any] = {"recipe": data["recipe"]}
    for split in ("train", "valid", "test_same"):
        rows = []
        for context, reply in data[split]:
            c, r = pieces(context)[-max_length:], pieces(reply)
            if split != "test_same" and len(r) > max_length:
                continue
            rows.append([c, r, len(reply)])
        converted[split] = rows
    return converted


# ---- train (needs torch and nlp only) ------------------------------------------------------------


def train(
    data: Path,
    out: Path,
    steps: int,
    validate_every: int,
    names: list[str] | None,
    minutes: float | None = None,
) -> None:
    """Every variant in its own process, all at once; `minutes` caps each run's time (the
    learning rate still reaches zero at whichever budget ends first)."""
    out.mkdir(parents=True, exist_ok=True)
    chosen = [v for v in VARIANTS if not names or v.name in names]
    jobs = [(v, data, out, steps, validate_every, minutes) for v in chosen]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        results = pool.starmap(_train_one_safely, jobs)
    summary = {r["name"]: r for r in results}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, r in summary.items():
        print(name, json.dumps({k: v for k, v in r.items() if k != "sizes"}))


def _train_one_safely(*args: Any) -> dict[str, Any]:
    """One variant's failure is reported in the summary instead of losing every other result."""
    try:
        return _train_one(*args)
    except Exception as exc:
        logging.getLogger("sweep").exception("variant %s failed", args[0].name)
        return {"name": args[0].name, "variant": asdict(args[0]), "error": repr(exc)}


def _train_one(
    variant: Variant,
    data_dir: Path,
    out: Path,
    steps: int,
    validate_every: int,
    minutes: float | None,
) -> dict[str, Any]:
    import torch

    from config import ModelSettings, TextSettings, TrainingSettings
    from nlp.datasets import EncodedPair
    from nlp.device import resolve_device
    from nlp.recipe import DataRecipe
    from nlp.seq2seq import Seq2Seq
    from nlp.training import Trainer, set_seed
    from nlp.vocabulary import Vocabulary

    torch.set_num_threads(1)
    logging.basicConfig(
        filename=out / f"{variant.name}.log",
        level=logging.INFO,
        format="%(asctime)s %(message)s",
    )
    with gzip.open(data_dir / f"{variant.data}.json.gz", "rt", encoding="utf-8") as f:
        data = json.load(f)
    recipe = DataRecipe.model_validate(data["recipe"])
    set_seed(1234)
    vocab = Vocabulary.build(
        (s for row in data["train"] for s in row[:2]),
        1 if variant.subword else recipe.min_count,
        recipe.max_vocab + (200 if variant.subword else 0),
    )

    def encoded(rows: list[list[Any]]) -> list[EncodedPair]:
        return [EncodedPair(vocab.encode(row[0]), vocab.encode(row[1])) for row in rows]

    train_pairs, valid_pairs = encoded(data["train"]), encoded(data["valid"])
    model_settings = ModelSettings(
        hidden_size=variant.hidden_size,
        embedding_dim=variant.hidden_size,
        dropout=variant.dropout,
    )
    device = resolve_device("auto")
    settings = TrainingSettings(
        max_epochs=1000,
        max_steps=int(steps * variant.step_share),
        time_budget_minutes=minutes,
        warmup_steps=500,
        validate_every_steps=validate_every,
        early_stopping_patience=1000,
        average_last=3,
        device=str(device),
    )
    started = time.monotonic()
    trainer = Trainer(
        Seq2Seq(model_settings, len(vocab)),
        vocab,
        settings,
        model_settings,
        TextSettings(),
        recipe,
        out / variant.name,
        device,
        info={"sweep_variant": asdict(variant)},
        fp16_weights=True,
        show_progress=False,
    )
    result = trainer.train(train_pairs, valid_pairs)
    scores = _score(out / variant.name, data["test_same"], variant, device)
    log.info("scores: %s", json.dumps(scores))
    return {
        "name": variant.name,
        "variant": asdict(variant),
        "train_pairs": len(train_pairs),
        "vocab": len(vocab),
        "steps": result.steps,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "best_valid_ppl": math.exp(min(result.best_valid_loss, 50)),
        **scores,
    }


def _score(
    checkpoint_dir: Path, rows: list[list[Any]], variant: Variant, device: Any
) -> dict[str, Any]:
    """Per-word perplexity on the comparison pairs and greedy reply metrics at three sizes."""
    import torch

    from config import DecodingSettings
    from nlp.checkpoint import load_checkpoint
    from nlp.datasets import EncodedPair, bucketed_batches
    from nlp.metrics import reply_metrics
    from nlp.search.decode import decode
    from nlp.training import batch_loss
    from nlp.vocabulary import UNK_ID

    checkpoint = load_checkpoint(checkpoint_dir, device)
    model, vocab = checkpoint.model, checkpoint.vocab
    pairs = [EncodedPair(vocab.encode(r[0]), vocab.encode(r[1])) for r in rows]
    words = sum((r[2] if variant.subword else len(r[1])) + 1 for r in rows)
    nll, tokens = 0.0, 0
    with torch.inference_mode():
        for batch in bucketed_batches(pairs, 128, shuffle=False):
            loss, n = batch_loss(model, batch.to(device))
            nll += float(loss) * n
            tokens += n
    unk = sum(t == UNK_ID for p in pairs for t in p.trg) / max(1, sum(len(p.trg) for p in pairs))
    out: dict[str, Any] = {
        "test_pairs": len(pairs),
        "test_ppl_per_word": math.exp(nll / words),
        "test_ppl_per_token": math.exp(nll / tokens),
        "reply_unk_rate": unk,
        "sizes": {},
    }
    if variant.reverse:
        return out
    decoding = DecodingSettings(max_length=40 if variant.subword else 20)
    for size in SIZES:
        chosen = pairs[:size]
        hyps: list[list[str]] = []
        refs: list[list[str]] = []
        with torch.inference_mode():
            for batch in bucketed_batches(chosen, 128, shuffle=False):
                batch = batch.to(device)
                hyps.extend(
                    _words(vocab.decode(h.tokens), variant.subword)
                    for h in decode(model, batch.src, batch.src_lengths, decoding)
                )
                refs.extend(
                    _words(vocab.decode(r), variant.subword) for r in batch.trg_out.tolist()
                )
        metrics = reply_metrics(hyps, refs)
        joined = [" ".join(h) for h in hyps]
        metrics["top_reply_share"] = max(joined.count(j) for j in set(joined)) / len(joined)
        out["sizes"][str(size)] = metrics
    return out


def _words(tokens: list[str], subword: bool) -> list[str]:
    """Subword pieces back to words (sentencepiece marks a word start with U+2581)."""
    return "".join(tokens).replace("\u2581", " ").split() if subword else tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--only", action="append")
    t = sub.add_parser("train")
    t.add_argument("--data", type=Path, required=True)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, required=True)
    t.add_argument("--validate-every", type=int, default=1000)
    t.add_argument("--minutes", type=float, help="time budget of each run")
    t.add_argument("--only", action="append")
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.out, args.only)
    else:
        train(args.data, args.out, args.steps, args.validate_every, args.only, args.minutes)


if __name__ == "__main__":
    main()
