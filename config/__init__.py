"""Typed settings for the whole application, read once and passed down explicitly."""

from config.settings import (
    DecodingSettings,
    DialogueSettings,
    ModelSettings,
    Settings,
    StorageSettings,
    TelegramSettings,
    TextSettings,
    TrainingSettings,
    load_settings,
)

__all__ = [
    "DecodingSettings",
    "DialogueSettings",
    "ModelSettings",
    "Settings",
    "StorageSettings",
    "TelegramSettings",
    "TextSettings",
    "TrainingSettings",
    "load_settings",
]
