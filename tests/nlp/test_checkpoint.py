import pickle
import shutil
from pathlib import Path

import pytest
import torch

from nlp.checkpoint import load_checkpoint, save_checkpoint
from nlp.errors import CheckpointError
from nlp.responder import Responder

CONTEXTS = ["hello", "how are you?", "tell me a joke", "an unseen sentence entirely"]


def test_round_trip_gives_identical_replies(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = save_checkpoint(tmp_path / "copy", load_checkpoint(tiny_model_dir))
    assert Responder(copy).reply(CONTEXTS) == Responder(tiny_model_dir).reply(CONTEXTS)


def test_fp16_storage_loads_and_replies_alike(tiny_model_dir: Path, tmp_path: Path) -> None:
    half = save_checkpoint(tmp_path / "half", load_checkpoint(tiny_model_dir), fp16=True)
    assert (half / "model.safetensors").stat().st_size < (
        tiny_model_dir / "model.safetensors"
    ).stat().st_size
    assert Responder(half).reply(CONTEXTS[:3]) == Responder(tiny_model_dir).reply(CONTEXTS[:3])


def test_loading_runs_no_pickle(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while loading a checkpoint")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert load_checkpoint(tiny_model_dir).model is not None


def _copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "ckpt"))


def test_tampered_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_model_dir, tmp_path)
    data = bytearray((ckpt / "model.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (ckpt / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(ckpt)


def test_tampered_vocabulary_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_model_dir, tmp_path)
    text = (ckpt / "vocab.json").read_text()
    (ckpt / "vocab.json").write_text(text.replace("hello", "HELLO"))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(ckpt)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "vocab.json"])
def test_missing_file_is_a_clear_error(tiny_model_dir: Path, tmp_path: Path, name: str) -> None:
    ckpt = _copy(tiny_model_dir, tmp_path)
    (ckpt / name).unlink()
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(ckpt)


def test_corrupt_config_and_missing_directory(tiny_model_dir: Path, tmp_path: Path) -> None:
    ckpt = _copy(tiny_model_dir, tmp_path)
    (ckpt / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")


def test_truncated_weights_without_checksums_are_refused(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ckpt = _copy(tiny_model_dir, tmp_path)
    config = (ckpt / "config.json").read_text()
    import json

    data = json.loads(config)
    del data["sha256"], data["config_sha256"]  # as old checkpoints: no checksums at all
    (ckpt / "config.json").write_text(json.dumps(data))
    weights = ckpt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_checkpoint(ckpt)


def test_saving_over_an_existing_checkpoint_keeps_extra_files(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ckpt = _copy(tiny_model_dir, tmp_path)
    (ckpt / "README.md").write_text("model card")
    save_checkpoint(ckpt, load_checkpoint(tiny_model_dir))
    assert (ckpt / "README.md").read_text() == "model card"
    assert not list(tmp_path.glob(".ckpt*"))  # no temporary directories left behind
