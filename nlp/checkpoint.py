"""A checkpoint is a directory: model.safetensors, config.json, vocab.json, metrics.json.

Loading runs no pickled code (safetensors + JSON only), and config.json records a SHA-256 of the
weight and vocabulary files so a tampered or truncated file is refused with a clear error instead
of producing garbage replies. Saving writes into a temporary sibling directory and renames it into
place, so a reader never sees a half-written checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from config import ModelSettings, TextSettings
from nlp.errors import CheckpointError
from nlp.recipe import DataRecipe
from nlp.seq2seq import Seq2Seq
from nlp.vocabulary import Vocabulary

FORMAT_VERSION = 1
CONFIG_SHA256 = "config_sha256"  # of config.json's other keys, canonical JSON
MAX_VOCAB_SIZE = 2_000_000  # a bound checked before anything is allocated
WEIGHTS, CONFIG, VOCAB, METRICS = "model.safetensors", "config.json", "vocab.json", "metrics.json"
OPTIMIZER, TRAINER_STATE = "optimizer.safetensors", "trainer_state.json"


@dataclass
class Checkpoint:
    model: Seq2Seq
    vocab: Vocabulary
    model_settings: ModelSettings
    text_settings: TextSettings
    recipe: DataRecipe
    metrics: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # free-form: steps, parent, schedule, ...


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of the config without its own digest: keys sorted, no whitespace, so the digest
    does not depend on how the file was formatted."""
    body = {key: value for key, value in config.items() if key != CONFIG_SHA256}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_checkpoint(
    directory: Path,
    checkpoint: Checkpoint,
    *,
    fp16: bool = False,
    optimizer_state: dict[str, torch.Tensor] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write atomically: build in a temp dir next to `directory`, then swap it in."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make a shipped model unreadable to other users
    try:
        dtype = torch.float16 if fp16 else torch.float32
        # Tied weights are one tensor under two names; safetensors wants each stored once.
        aliases = _alias_names(checkpoint.model)
        state = {
            name: tensor.detach().to("cpu", dtype).contiguous()
            for name, tensor in checkpoint.model.state_dict().items()
            if name not in aliases
        }
        save_file(state, str(tmp / WEIGHTS))
        checkpoint.vocab.save(tmp / VOCAB)
        if optimizer_state is not None:
            save_file(optimizer_state, str(tmp / OPTIMIZER))
        if trainer_state is not None:
            _write_json(tmp / TRAINER_STATE, trainer_state)
        _write_json(tmp / METRICS, checkpoint.metrics)
        config = {
            "format_version": FORMAT_VERSION,
            "vocab_size": len(checkpoint.vocab),
            "model": checkpoint.model_settings.model_dump(),
            "text": checkpoint.text_settings.model_dump(),
            "recipe": checkpoint.recipe.model_dump(mode="json"),
            "weights_dtype": "float16" if fp16 else "float32",
            "info": checkpoint.info,
            "sha256": {name: _sha256(tmp / name) for name in (WEIGHTS, VOCAB)},
        }
        _write_json(tmp / CONFIG, {**config, CONFIG_SHA256: _config_digest(config)})
        for item in tmp.iterdir():
            item.chmod(0o644)
        _keep_extra_files(directory, tmp)
        _swap_in(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _alias_names(model: torch.nn.Module) -> set[str]:
    """State-dict names that share storage with an earlier name (the shared/tied embedding)."""
    seen: set[int] = set()
    aliases = set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            aliases.add(name)
        seen.add(tensor.data_ptr())
    return aliases


def _keep_extra_files(old: Path, new: Path) -> None:
    """Files someone put next to the checkpoint (a model card, plots) survive a re-save."""
    if old.is_dir():
        for item in old.iterdir():
            if item.is_file() and not (new / item.name).exists():
                shutil.copy2(item, new / item.name)


def _swap_in(tmp: Path, directory: Path) -> None:
    if directory.exists():
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)


def read_config(directory: Path) -> dict[str, Any]:
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {directory}")
    for name in (WEIGHTS, CONFIG, VOCAB):
        if not (directory / name).is_file():
            raise CheckpointError(f"checkpoint {directory} is incomplete: {name} is missing")
    try:
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {directory}: unreadable {CONFIG}: {exc}") from exc
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {directory}: unsupported {CONFIG} format")
    # Checkpoints written before the config digest existed (the first default) have none.
    if CONFIG_SHA256 in config and config[CONFIG_SHA256] != _config_digest(config):
        raise CheckpointError(
            f"checkpoint {directory}: {CONFIG} does not match its recorded checksum "
            "(modified or corrupt); refusing to load it"
        )
    return config


def load_checkpoint(directory: Path, device: torch.device | str = "cpu") -> Checkpoint:
    directory = Path(directory)
    config = read_config(directory)
    digests = config.get("sha256") or {}
    if not isinstance(digests, dict):
        raise CheckpointError(f"checkpoint {directory}: invalid {CONFIG}: sha256 is not a mapping")
    for name, expected in digests.items():
        if _sha256(directory / name) != expected:
            raise CheckpointError(
                f"checkpoint {directory}: {name} does not match its recorded checksum "
                "(modified or corrupt); refusing to load it"
            )
    try:
        model_settings = ModelSettings(**config["model"])
        text_settings = TextSettings(**config["text"])
        vocab_size = int(config["vocab_size"])
    except ValidationError as exc:  # its text runs over several lines: the first error will do
        first = exc.errors()[0]
        where = ".".join([exc.title, *(str(part) for part in first["loc"])])
        raise CheckpointError(
            f"checkpoint {directory}: invalid {CONFIG}: {where}: {first['msg']}"
        ) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {directory}: invalid {CONFIG}: {exc}") from exc
    if not 4 <= vocab_size <= MAX_VOCAB_SIZE:
        raise CheckpointError(
            f"checkpoint {directory}: invalid {CONFIG}: vocab_size {vocab_size} is outside "
            f"4..{MAX_VOCAB_SIZE}"
        )
    recipe = DataRecipe.from_config(config)
    vocab = Vocabulary.load(directory / VOCAB)
    if len(vocab) != vocab_size:
        raise CheckpointError(f"checkpoint {directory}: vocabulary size does not match the model")
    _check_weight_shapes(directory, model_settings, vocab_size)
    model = Seq2Seq(model_settings, vocab_size)
    try:
        state = load_file(str(directory / WEIGHTS), device="cpu")
        state = {k: v.float() for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise CheckpointError(f"checkpoint {directory}: cannot load weights: {exc}") from exc
    missing = [m for m in missing if m not in _alias_names(model)]
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {directory}: weights do not fit the model "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    metrics = _read_optional_json(directory / METRICS)
    return Checkpoint(
        model.to(device).eval(),
        vocab,
        model_settings,
        text_settings,
        recipe,
        metrics,
        config.get("info", {}),
    )


def _check_weight_shapes(directory: Path, model_settings: ModelSettings, vocab_size: int) -> None:
    """The sizes in config.json must be those of the tensors in the weight file, checked before a
    model of those sizes is allocated: a config whose digest was recomputed after an edit would
    otherwise allocate whatever it asks for. The model is built on the meta device (shapes, no
    memory) and the file's shapes come from its header (nothing loaded)."""
    with torch.device("meta"):
        expected = {
            name: tuple(tensor.shape)
            for name, tensor in Seq2Seq(model_settings, vocab_size).state_dict().items()
        }
    try:
        with safe_open(str(directory / WEIGHTS), framework="pt") as weights:
            names = weights.keys()  # not a dict: it has keys() but cannot be iterated
            found = {name: tuple(weights.get_slice(name).get_shape()) for name in names}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint {directory}: cannot load weights: {exc}") from exc
    for name, shape in found.items():
        if name in expected and shape != expected[name]:
            raise CheckpointError(
                f"checkpoint {directory}: {WEIGHTS} does not fit {CONFIG}: {name} is "
                f"{list(shape)} in the file, {list(expected[name])} by the config"
            )


def load_training_state(
    directory: Path,
) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any] | None]:
    """Optimizer tensors and trainer counters saved for `--resume` (None when absent)."""
    directory = Path(directory)
    try:
        optimizer = (
            load_file(str(directory / OPTIMIZER)) if (directory / OPTIMIZER).is_file() else None
        )
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"checkpoint {directory}: cannot read {OPTIMIZER}: {exc}") from exc
    state = _read_optional_json(directory / TRAINER_STATE) or None
    return optimizer, state


def _read_optional_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"unreadable {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}
