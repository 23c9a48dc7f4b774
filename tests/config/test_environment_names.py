"""One spelling per environment variable: the names the README documents are read, an old
spelling is refused with the name to use, a removed setting is ignored with one warning; and
retraining's training settings are a nested override of `TrainingSettings`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
from pydantic_settings import SettingsError

from bot.cli import main
from config import Settings, TrainingSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in os.environ:
        if name.startswith("CHATBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_the_documented_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_TELEGRAM_TOKEN", "123:abc")
    monkeypatch.setenv("CHATBOT_TELEGRAM_BASE_URL", "http://127.0.0.1:8081/bot")
    monkeypatch.setenv("CHATBOT_ADMIN_IDS", "1,2")
    monkeypatch.setenv("CHATBOT_DB_AUTO_UPGRADE", "1")
    settings = Settings()
    assert settings.telegram.token is not None
    assert settings.telegram.token.get_secret_value() == "123:abc"
    assert settings.telegram.base_url == "http://127.0.0.1:8081/bot"
    assert settings.telegram.admin_ids == [1, 2]
    assert settings.storage.auto_upgrade is True


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("CHATBOT_TELEGRAM__TOKEN", "CHATBOT_TELEGRAM_TOKEN"),
        ("CHATBOT_TELEGRAM__BASE_URL", "CHATBOT_TELEGRAM_BASE_URL"),
        ("CHATBOT_TELEGRAM__ADMIN_IDS", "CHATBOT_ADMIN_IDS"),
        ("CHATBOT_STORAGE__AUTO_UPGRADE", "CHATBOT_DB_AUTO_UPGRADE"),
        ("CHATBOT_RETRAIN__LEARNING_RATE", "CHATBOT_RETRAIN__TRAINING__LEARNING_RATE"),
        ("CHATBOT_RETRAIN__EPOCHS", "CHATBOT_RETRAIN__TRAINING__MAX_EPOCHS"),
    ],
)
def test_an_old_spelling_in_the_environment_is_refused_naming_the_new_one(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    monkeypatch.setenv(old, "1")
    with pytest.raises(SettingsError, match=f"{old} is not read any more: set {new} instead"):
        Settings()


def test_an_old_spelling_in_dot_env_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("CHATBOT_TELEGRAM__TOKEN=123:abc\n")
    with pytest.raises(SettingsError, match="set CHATBOT_TELEGRAM_TOKEN instead"):
        Settings()


def test_the_cli_reports_an_old_spelling_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHATBOT_STORAGE__AUTO_UPGRADE", "1")
    assert main(["model", "list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "CHATBOT_STORAGE__AUTO_UPGRADE is not read any more: set CHATBOT_DB_AUTO_UPGRADE" in err


def test_context_turns_is_ignored_with_one_warning_saying_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CHATBOT_DIALOGUE__CONTEXT_TURNS", "3")
    (tmp_path / ".env").write_text("CHATBOT_DIALOGUE__CONTEXT_TURNS=3\n")
    with caplog.at_level(logging.WARNING, logger="config.settings"):
        Settings()
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("CHATBOT_DIALOGUE__CONTEXT_TURNS is ignored: ")
    assert "data recipe" in warning


def test_retraining_overrides_some_training_settings_and_keeps_its_own_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fine_tuning = Settings().retrain.training
    assert (fine_tuning.max_epochs, fine_tuning.learning_rate) == (3, 5e-4)
    assert fine_tuning.time_budget_minutes == 30
    assert fine_tuning.batch_size == TrainingSettings().batch_size  # the rest: as from scratch

    monkeypatch.setenv("CHATBOT_RETRAIN__TRAINING__LEARNING_RATE", "0.01")
    changed = Settings().retrain.training
    assert changed.learning_rate == 0.01
    assert (changed.max_epochs, changed.time_budget_minutes) == (3, 30)  # still fine-tuning's
    assert Settings().training.learning_rate == TrainingSettings().learning_rate


def test_retraining_needs_a_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_RETRAIN__TRAINING__TIME_BUDGET_MINUTES", "0")
    with pytest.raises(ValueError, match="time_budget_minutes must be a positive number"):
        Settings()


def test_send_retries_is_ignored_with_one_warning_saying_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CHATBOT_TELEGRAM__SEND_RETRIES", "5")
    with caplog.at_level(logging.WARNING, logger="config.settings"):
        settings = Settings()
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("CHATBOT_TELEGRAM__SEND_RETRIES is ignored: ")
    assert "until it is delivered" in warning
    assert "send_retries" not in type(settings.telegram).model_fields


def test_the_vocabulary_rule_is_read_from_its_documented_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings().retrain.vocab_min_users == 3
    monkeypatch.setenv("CHATBOT_RETRAIN__VOCAB_MIN_USERS", "5")
    assert Settings().retrain.vocab_min_users == 5
    monkeypatch.setenv("CHATBOT_RETRAIN__VOCAB_MIN_USERS", "1")  # one person: /forget says not
    with pytest.raises(ValueError, match="vocab_min_users"):
        Settings()
