"""What the retraining tests share: fast settings for tiny models, conversations that teach a
new pattern, and a digest to prove a directory was not touched."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from config import DecodingSettings, RetrainSettings, Settings
from storage.conversations import (
    ChatRef,
    UserRef,
    get_or_create_chat,
    get_or_create_user,
    save_turn,
)
from storage.database import Database

# A pattern the tiny model has never seen: several people asking about a colour, answered alike.
PATTERN_REPLY = "blue like the sky."
PATTERN = [
    "what is your favourite colour?",
    "which colour do you like?",
    "what colour do you like best?",
    "do you have a favourite colour?",
    "tell me your favourite colour",
    "your favourite colour?",
    "what colour is best?",
    "which colour is your favourite?",
]
ANN = UserRef("telegram", 501, "Ann")
BOB = UserRef("telegram", 502, "Bob")
CY = UserRef("telegram", 503, "Cy")


def fast_retrain(base_corpus: Path, **overrides: Any) -> RetrainSettings:
    """Seconds, not minutes: the tiny pairs file as the base corpus, one CPU thread."""
    values: dict[str, Any] = {
        "min_new_pairs": 4,
        "base_sources": [str(base_corpus)],
        "base_sample_pairs": 100,
        "settle_seconds": 0,
        "heldout_fraction": 0.25,
        "training": {
            # Measured over seeds: lr 0.01 sometimes shook the base perplexity past the 5 % gate.
            "max_epochs": 12,
            "early_stopping_patience": 12,  # every epoch runs; the best one is kept
            "learning_rate": 0.003,
            "batch_size": 8,
            "device": "cpu",
            "time_budget_minutes": 2,
        },
        "new_word_min_count": 1,
        "new_pair_repeats": 4,
        "cpu_threads": 1,
        "grace_minutes": 1,
        "poll_seconds": 0.5,
    }
    return RetrainSettings(**{**values, **overrides})


def with_retrain(
    settings: Settings, *, training: dict[str, Any] | None = None, **changes: Any
) -> Settings:
    """`settings` with some retraining settings (and some of `retrain.training`) changed."""
    retrain = settings.retrain
    if training:
        changes["training"] = retrain.training.model_copy(update=training)
    return settings.model_copy(update={"retrain": retrain.model_copy(update=changes)})


def retrain_settings(
    tmp_path: Path, model_dir: Path, db: Database, base_corpus: Path, **overrides: Any
) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        model_dir=model_dir,
        database_url=db.url.render_as_string(hide_password=False),
        db_auto_upgrade=False,
        decoding=DecodingSettings(),
        retrain=fast_retrain(base_corpus, **overrides),
    )


def seed_pattern(db: Database, contexts: list[str] = PATTERN, first_group: int = 7000) -> None:
    """Each question asked in a group of its own and answered by someone else: Ann, Bob and Cy
    take turns at both (three people, so the pattern's new words may join the vocabulary:
    `retrain.vocab_min_users`)."""

    def seed(session: Session) -> None:
        people = [get_or_create_user(session, person) for person in (ANN, BOB, CY)]
        for n, question in enumerate(contexts):
            chat = get_or_create_chat(session, ChatRef("telegram", -(first_group + n), "group"))
            save_turn(session, chat_id=chat, user_id=people[n % 3], text=question)
            save_turn(session, chat_id=chat, user_id=people[(n + 1) % 3], text=PATTERN_REPLY)

    db.transact(seed)


def tree_digest(directory: Path) -> dict[str, str]:
    """Every file under `directory` (relative path -> SHA-256): equal digests, equal bytes."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def cli_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `load_settings()` (the CLI's) equal `settings`' essentials."""
    return {
        "CHATBOT_DATABASE_URL": str(settings.database_url),
        "CHATBOT_DATA_DIR": str(settings.data_dir),
        "CHATBOT_MODEL_DIR": str(settings.model_dir),
        **env_variables("CHATBOT_RETRAIN", settings.retrain.model_dump(mode="json")),
    }


def env_variables(prefix: str, values: dict[str, Any]) -> dict[str, str]:
    """Settings as environment variables, nested sections spelt with `__`."""
    env: dict[str, str] = {}
    for name, value in values.items():
        key = f"{prefix}__{name.upper()}"
        if isinstance(value, dict):
            env.update(env_variables(key, value))
        elif value is not None:
            env[key] = json.dumps(value) if isinstance(value, list) else str(value)
    return env
