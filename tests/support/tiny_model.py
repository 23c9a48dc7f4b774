"""A tiny model that overfits 20 pairs in a few seconds: proof that data -> training -> checkpoint
-> decoding works end to end, and a fast real model for the bot tests."""

from __future__ import annotations

from pathlib import Path

from config import ModelSettings, TextSettings, TrainingSettings
from nlp.training import TrainResult, train_from_sources

TINY_PAIRS: list[tuple[str, str]] = [
    ("hello", "hi there!"),
    ("how are you?", "i am fine, thanks."),
    ("what is your name?", "i am a chatbot."),
    ("where do you live?", "in a computer."),
    ("do you like music?", "yes, i love jazz."),
    ("what time is it?", "time for tea."),
    ("tell me a joke", "why did the chicken cross the road?"),
    ("good night", "sleep well!"),
    ("thank you", "you are welcome."),
    ("what do you eat?", "only electricity."),
    ("are you happy?", "very happy today."),
    ("who made you?", "a small team of engineers."),
    ("can you help me?", "sure, what do you need?"),
    ("i am sad", "i am sorry to hear that."),
    ("do you have a dog?", "no, but i like cats."),
    ("what is the weather like?", "sunny and warm."),
    ("bye", "goodbye, see you soon!"),
    ("what are you doing?", "talking to you."),
    ("how old are you?", "i was born yesterday."),
    ("do you sleep?", "never, i am always awake."),
]


def write_pairs(path: Path, pairs: list[tuple[str, str]] = TINY_PAIRS) -> Path:
    path.write_text("".join(f"{c}\t{r}\n" for c, r in pairs), encoding="utf-8")
    return path


def tiny_settings(**overrides: object) -> tuple[TrainingSettings, ModelSettings]:
    training = TrainingSettings(
        batch_size=4,
        learning_rate=0.01,
        max_epochs=25,
        early_stopping_patience=1000,
        lr_decay_patience=1000,
        min_count=1,
        valid_fraction=0.0,
        test_fraction=0.0,
        device="cpu",
        seed=7,
    )
    model = ModelSettings(embedding_dim=32, hidden_size=64, num_layers=1, dropout=0.0)
    return training.model_copy(update=overrides), model


def train_tiny(out_dir: Path, data_file: Path, **overrides: object) -> TrainResult:
    training, model = tiny_settings(**overrides)
    return train_from_sources(
        [str(data_file)], out_dir, training, model, TextSettings(), show_progress=False
    )
