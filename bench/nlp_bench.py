"""nlp speed, measured side by side in one run: our trainer vs the tutorial's, and reply latency.

1. Training throughput (target tokens/s) at equal sizes: hidden 500, 2 layers, batch 64, pairs of
   at most 10 tokens, dot attention; the reference is `bench.reference_tutorial`.
2. Time-to-quality: the reference recipe (Adam 1e-4 / 5e-4, teacher forcing 1.0) trains for a
   fixed number of steps; we time how long our recipe needs to reach the same validation loss.
   Only training steps are timed (validation passes are excluded for both).
3. Reply latency of a checkpoint (the default model): p50/p95 for greedy and beam 5, fp32 and
   int8, one context at a time; batched throughput at batch 32; int8/fp32 agreement.
Run alone: `python -m bench.nlp_bench [--quick] [--model DIR]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.reference_tutorial import TutorialBatch, TutorialModel, random_batches
from config import DecodingSettings, ModelSettings, TextSettings, TrainingSettings
from nlp.checkpoint import read_config
from nlp.datasets import Corpus, bucketed_batches, prepare_corpus, tokenized_splits
from nlp.recipe import DataRecipe
from nlp.responder import Responder
from nlp.seq2seq import Seq2Seq
from nlp.text import TextProcessor
from nlp.training import Trainer, mean_loss, set_seed
from nlp.vocabulary import Vocabulary

HIDDEN, LAYERS, BATCH, MAX_LEN = 500, 2, 64, 10


RECIPE = DataRecipe(sources=("chitchat",), max_length=MAX_LEN)


def _corpus() -> Corpus:
    return prepare_corpus(RECIPE, TextProcessor())


def _our_trainer(vocab: Vocabulary, bf16: bool) -> Trainer:
    """Our trainer (Adam 1e-3, clipping 5) on a model of the reference's sizes; only its
    `train_step` is used, so nothing is ever written to the output directory."""
    model_settings = ModelSettings(
        embedding_dim=HIDDEN,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        dropout=0.1,
        attention="dot",
        tie_embeddings=False,
    )
    return Trainer(
        Seq2Seq(model_settings, len(vocab)),
        vocab,
        TrainingSettings(learning_rate=1e-3, bf16=bf16),
        model_settings,
        TextSettings(),
        RECIPE,
        Path(tempfile.gettempdir()) / "bench-unused",
        torch.device("cpu"),
        show_progress=False,
    )


def _timed_steps(trainer: Any, batches: list[Any], warmup: int) -> float:
    """Target tokens per second over `batches[warmup:]`."""
    for batch in batches[:warmup]:
        trainer.train_step(batch)
    tokens, start = 0, time.perf_counter()
    for batch in batches[warmup:]:
        tokens += trainer.train_step(batch)[1]
    return tokens / (time.perf_counter() - start)


def training_throughput(corpus: Corpus, steps: int, warmup: int = 3) -> dict[str, Any]:
    train = corpus.encoded["train"]
    set_seed(0)
    reference = _timed_steps(
        TutorialModel(len(corpus.vocab)), random_batches(train, BATCH, steps + warmup, 0), warmup
    )
    ours: dict[str, float] = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        set_seed(0)
        batches = list(bucketed_batches(train, BATCH, shuffle=True, seed=0))[: steps + warmup]
        ours[name] = _timed_steps(_our_trainer(corpus.vocab, bf16), batches, warmup)
    best = max(ours, key=lambda k: ours[k])
    return {
        "sizes": {"hidden": HIDDEN, "layers": LAYERS, "batch": BATCH, "max_length": MAX_LEN},
        "reference_tokens_per_s": reference,
        "ours_tokens_per_s": ours,
        "ratio_fp32": ours["fp32"] / reference,
        "ratio_best": ours[best] / reference,
        "best": best,
        "target_ratio": 3.0,
    }


def time_to_quality(corpus: Corpus, reference_steps: int, bf16: bool) -> dict[str, Any]:
    train, valid = corpus.encoded["train"], corpus.encoded["valid"][:2000]
    set_seed(0)
    reference = TutorialModel(len(corpus.vocab))
    ref_batches = random_batches(train, BATCH, reference_steps, 1)
    start = time.perf_counter()
    for ref_batch in ref_batches:
        reference.train_step(ref_batch)
    reference_seconds = time.perf_counter() - start
    valid_batches = [TutorialBatch(valid[i : i + 128]) for i in range(0, len(valid), 128)]
    target = reference.mean_loss(valid_batches)

    set_seed(0)
    ours = _our_trainer(corpus.vocab, bf16)
    seconds, steps, loss = 0.0, 0, float("inf")
    while steps < reference_steps and loss > target:
        for batch in bucketed_batches(train, BATCH, shuffle=True, seed=steps):
            start = time.perf_counter()
            ours.train_step(batch)
            seconds += time.perf_counter() - start
            steps += 1
            if steps % 10 == 0 or steps >= reference_steps:
                loss = mean_loss(ours.model, valid, torch.device("cpu"))
                if loss <= target or steps >= reference_steps:
                    break
    return {
        "reference_steps": reference_steps,
        "reference_seconds": reference_seconds,
        "reference_valid_loss": target,
        "ours_steps": steps,
        "ours_seconds": seconds,
        "ours_valid_loss": loss,
        "reached": loss <= target,
        "ratio": seconds / reference_seconds,
        "target_ratio": 0.25,
        "ours_bf16": bf16,
    }


def _contexts(model_dir: Path, count: int) -> list[list[str]]:
    """Test-split contexts of the checkpoint's own data, as token lists joined back to text."""
    recipe = DataRecipe.from_config(read_config(model_dir))
    tokenized = tokenized_splits(recipe, TextProcessor())
    return [p.context for p in tokenized["test"][:count]]


def _percentiles(samples: list[float]) -> dict[str, float]:
    q = statistics.quantiles(samples, n=100)
    return {
        "p50_ms": statistics.median(samples),
        "p95_ms": q[94],
        "mean_ms": statistics.fmean(samples),
    }


def reply_latency(model_dir: Path, count: int) -> dict[str, Any]:
    texts = [" ".join(c) for c in _contexts(model_dir, count)]
    results: dict[str, Any] = {"model": str(model_dir), "contexts": len(texts)}
    replies: dict[str, list[str]] = {}
    for precision in ("fp32", "int8"):
        for strategy, beam in (("greedy", 1), ("beam5", 5)):
            decoding = DecodingSettings(
                strategy="greedy" if beam == 1 else "beam",
                beam_size=beam,
                quantize_int8=precision == "int8",
            )
            responder = Responder(model_dir, decoding)
            responder.reply(texts[:5])  # warm-up
            times, out = [], []
            for text in texts:
                start = time.perf_counter()
                out.append(responder.reply([text])[0])
                times.append((time.perf_counter() - start) * 1000.0)
            results[f"{strategy}_{precision}"] = _percentiles(times)
            replies[f"{strategy}_{precision}"] = out
            batch = texts[:32]
            start, rounds = time.perf_counter(), 0
            while rounds < 3 or time.perf_counter() - start < 2.0:
                responder.reply(batch)
                rounds += 1
            results[f"{strategy}_{precision}"]["batch32_replies_per_s"] = (
                rounds * len(batch) / (time.perf_counter() - start)
            )
    for strategy in ("greedy", "beam5"):
        a, b = replies[f"{strategy}_fp32"], replies[f"{strategy}_int8"]
        results[f"int8_agreement_{strategy}"] = sum(
            x == y for x, y in zip(a, b, strict=True)
        ) / len(a)
    results["targets"] = {"greedy_fp32_p50_ms": 3.0, "beam5_fp32_p50_ms": 15.0}
    return results


def run(model_dir: Path, quick: bool = False) -> dict[str, Any]:
    corpus = _corpus()
    steps = 10 if quick else 40
    results = {
        "training_throughput": training_throughput(corpus, steps),
    }
    bf16 = results["training_throughput"]["best"] == "bf16"
    results["time_to_quality"] = time_to_quality(corpus, 40 if quick else 300, bf16)
    if (model_dir / "config.json").is_file():
        results["reply_latency"] = reply_latency(model_dir, 50 if quick else 300)
    _print(results)
    return results


def _print(r: dict[str, Any]) -> None:
    t = r["training_throughput"]
    print(
        f"training throughput (hidden {HIDDEN}, batch {BATCH}): reference "
        f"{t['reference_tokens_per_s']:.0f} tok/s, ours fp32 {t['ours_tokens_per_s']['fp32']:.0f}"
        f", bf16 {t['ours_tokens_per_s']['bf16']:.0f} -> {t['ratio_best']:.2f}x (target >= 3x)"
    )
    q = r["time_to_quality"]
    print(
        f"time to quality (valid loss {q['reference_valid_loss']:.3f}): reference "
        f"{q['reference_seconds']:.1f} s / {q['reference_steps']} steps, ours "
        f"{q['ours_seconds']:.1f} s / {q['ours_steps']} steps -> {q['ratio']:.3f} "
        f"(target <= 0.25){'' if q['reached'] else ' NOT REACHED'}"
    )
    if "reply_latency" in r:
        lat = r["reply_latency"]
        for key in ("greedy_fp32", "beam5_fp32", "greedy_int8", "beam5_int8"):
            v = lat[key]
            print(
                f"reply latency {key:12s} p50 {v['p50_ms']:.2f} ms  p95 {v['p95_ms']:.2f} ms  "
                f"batch-32 {v['batch32_replies_per_s']:.0f} replies/s"
            )
        print(
            f"int8 agreement with fp32: greedy {lat['int8_agreement_greedy']:.1%}, "
            f"beam5 {lat['int8_agreement_beam5']:.1%}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", type=Path, default=Path("models/default"))
    args = parser.parse_args()
    print(json.dumps(run(args.model, args.quick), indent=2))
