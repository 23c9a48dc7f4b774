"""Evaluate a checkpoint on a split: perplexity plus the reply metrics of its decoded replies."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from config import DecodingSettings
from nlp.checkpoint import read_config
from nlp.datasets import EncodedPair, collate, corpus_from_splits, tokenized_splits
from nlp.errors import DataError
from nlp.metrics import reply_metrics
from nlp.recipe import DataRecipe
from nlp.responder import Responder
from nlp.training import mean_loss


def evaluate_pairs(
    responder: Responder,
    pairs: Sequence[EncodedPair],
    batch_size: int = 64,
    sizes: Sequence[int] = (),
) -> dict[str, Any]:
    """Perplexity of the references, and the reply metrics of the replies the responder gives
    (decoded as served: its settings, vocabulary rules, reverse model, seeded sampling).

    `sizes`: the same metrics on the first N pairs for each N (diversity numbers depend on how
    many replies they count), computed from the same decoded replies: decoding once keeps the
    sizes consistent with each other and costs one decode instead of one per size."""
    hypotheses: list[list[str]] = []
    references: list[list[str]] = []
    for start in range(0, len(pairs), batch_size):  # in order: `sizes` take prefixes
        batch = collate(pairs[start : start + batch_size])
        lengths = batch.src_lengths.tolist()
        sources = [row[:n] for row, n in zip(batch.src.tolist(), lengths, strict=True)]
        hypotheses.extend(reply.tokens for reply in responder.generate_ids(sources))
        references.extend(responder.vocab.decode(row) for row in batch.trg_out.tolist())

    scored: dict[int, dict[str, Any]] = {}  # by pair count: a size past the split is the whole

    def score(n: int) -> dict[str, Any]:
        if n not in scored:
            loss = mean_loss(responder.model, pairs[:n], responder.device)
            scored[n] = {
                "pairs": n,
                "loss": loss,
                "perplexity": math.exp(min(loss, 50.0)),
                **reply_metrics(hypotheses[:n], references[:n]),
            }
        return scored[n]

    result = dict(score(len(pairs)))
    if sizes:
        result["sizes"] = {str(n): score(min(n, len(pairs))) for n in sizes}
    return result


def evaluate_checkpoint(
    directory: Path,
    split: str = "test",
    decoding: DecodingSettings | None = None,
    sources: Sequence[str] | None = None,
    device: str = "cpu",
    limit: int | None = None,
    *,
    sizes: Sequence[int] = (),
    pairs_like: Path | None = None,
) -> dict[str, Any]:
    """Rebuild the split the checkpoint was trained with (same sources, seed-free hash split);
    `limit` keeps its first N pairs (a quick, reproducible check). `pairs_like`: score the
    pairs of another checkpoint's recipe instead (each read with this model's context rule), so
    two models are compared on the same pairs. `sizes`: the reply metrics also on the first N
    pairs for each N (diversity numbers depend on how many replies they count)."""
    decoding = decoding or DecodingSettings()
    responder = Responder(directory, decoding, device)
    selection = DataRecipe.from_config(read_config(pairs_like)) if pairs_like else None
    if selection is not None and sources:
        selection = selection.for_sources(sources)
    tokenized = tokenized_splits(
        responder.recipe.for_sources(sources), responder.processor, selection
    )
    corpus = corpus_from_splits(tokenized, vocab=responder.vocab)
    pairs = corpus.encoded[split][:limit]
    if not pairs:
        raise DataError(f"the {split!r} split of {directory} holds no pairs to evaluate")
    result = {
        "split": split,
        "limit": limit,
        "pairs_like": str(pairs_like) if pairs_like else None,
        "decoding": decoding.strategy,
        "decoding_settings": decoding.model_dump(mode="json", exclude_defaults=True),
        **evaluate_pairs(responder, pairs, sizes=sizes),
    }
    return result


def record_metrics(directory: Path, key: str, metrics: dict[str, Any]) -> None:
    """Add `metrics` under `key` in the checkpoint's metrics.json (not covered by the checksums)."""
    path = Path(directory) / "metrics.json"
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    recorded[key] = metrics
    path.write_text(json.dumps(recorded, indent=2) + "\n")
