"""The data recipe: what a model reads, recorded in its checkpoint and read back typed.

Sources, direction, how many turns of context, the length limit, the split fractions and the
vocabulary settings decide which pairs a model was trained on and what input it expects. Every
checkpoint's `config.json` carries its recipe, and everything that serves, evaluates or fine-tunes
a checkpoint takes these values from there: never from the current settings, never from a guessed
default. `model_input` is the one context rule (training pairs, fine-tuning, the Responder and
retraining all build a model input with it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from config import TrainingSettings
from nlp.errors import CheckpointError
from nlp.vocabulary import SEP


class DataRecipe(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sources: tuple[str, ...] = ()
    direction: Literal["forward", "reverse"] = "forward"  # reverse: p(context | reply), for MMI
    context_turns: int = Field(1, ge=1, le=64)  # 1 = the previous turn only
    max_length: int = Field(20, ge=2, le=1024)  # tokens of a context / reply
    valid_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.05, ge=0.0, lt=1.0)
    min_count: int = Field(2, ge=1)  # vocabulary: uses a word needs to get a row ...
    max_vocab: int = Field(8000, ge=10, le=2_000_000)  # ... and at most this many rows

    @classmethod
    def from_training(
        cls, sources: Sequence[str], training: TrainingSettings, *, reverse: bool = False
    ) -> DataRecipe:
        return cls(
            sources=tuple(sources),
            direction="reverse" if reverse else "forward",
            context_turns=training.context_turns,
            max_length=training.max_length,
            valid_fraction=training.valid_fraction,
            test_fraction=training.test_fraction,
            min_count=training.min_count,
            max_vocab=training.max_vocab,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DataRecipe:
        """The recipe of a checkpoint's `config.json`. Checkpoints written before the recipe
        existed (the first shipped default) kept these values in the free-form `info`, with the
        training defaults of their time (max length 20, one context turn)."""
        try:
            if "recipe" in config:
                return cls.model_validate(config["recipe"])
            info = config.get("info") or {}
            legacy = {key: info[key] for key in cls.model_fields if key in info}
            return cls.model_validate(legacy)
        except (ValidationError, TypeError) as exc:
            raise CheckpointError(f"invalid data recipe in config.json: {exc}") from exc

    def model_input(self, turns: Sequence[Sequence[str]]) -> list[str]:
        """The one context rule: the last `context_turns` turns (oldest first, tokenised), the
        empty ones skipped, joined by <sep>, cut to the last `max_length` tokens (the recent
        words matter most). Empty when no turn has a token."""
        tokens: list[str] = []
        for turn in turns[-self.context_turns :]:
            if turn:
                tokens.extend([*([SEP] if tokens else []), *turn])
        return tokens[-self.max_length :]

    def for_sources(self, sources: Sequence[str] | None) -> DataRecipe:
        """The same recipe over other sources (None: keep them), e.g. to evaluate on a file."""
        return self if not sources else self.model_copy(update={"sources": tuple(sources)})
