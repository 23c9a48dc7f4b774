"""Typed settings for the whole application, read once and passed down explicitly."""

from config.settings import (
    REPO_ROOT,
    DecodingSettings,
    DialogueSettings,
    ModelSettings,
    RetrainSettings,
    Settings,
    StorageSettings,
    TelegramSettings,
    TextSettings,
    TrainingSettings,
    load_settings,
)

__all__ = [
    "REPO_ROOT",
    "DecodingSettings",
    "DialogueSettings",
    "ModelSettings",
    "RetrainSettings",
    "Settings",
    "StorageSettings",
    "TelegramSettings",
    "TextSettings",
    "TrainingSettings",
    "load_settings",
]
