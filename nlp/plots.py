"""Figures: the loss curve of a run and the attention heatmap of one reply."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt


def plot_losses(history: Sequence[dict[str, Any]], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax.plot(epochs, [h["valid_loss"] for h in history], marker="o", label="valid")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy per token")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_attention(
    weights: Sequence[Sequence[float]], source: Sequence[str], target: Sequence[str], path: Path
) -> None:
    """weights: (target_len, source_len); one row per generated word."""
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(source), 1 + 0.4 * len(target)))
    ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(source)), list(source), rotation=60, ha="right")
    ax.set_yticks(range(len(target)), list(target))
    ax.set_xlabel("context")
    ax.set_ylabel("reply")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
