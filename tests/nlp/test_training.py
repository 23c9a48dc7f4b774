import json
from pathlib import Path

import pytest
import torch

from config import ModelSettings, TextSettings
from nlp.checkpoint import load_checkpoint
from nlp.errors import CheckpointError
from nlp.responder import Responder
from nlp.seq2seq import Seq2Seq
from nlp.text import TextProcessor, detokenize
from nlp.training import clip_gradients, train_from_sources
from tests.support.tiny_model import tiny_settings, train_tiny


def test_tiny_model_reproduces_its_twenty_training_replies(
    tiny_model_dir: Path, tiny_pairs: list[tuple[str, str]]
) -> None:
    processor = TextProcessor()
    replies = Responder(tiny_model_dir).reply([c for c, _ in tiny_pairs])
    assert replies == [detokenize(processor.tokenize(r)) for _, r in tiny_pairs]


def test_a_run_writes_checkpoint_history_and_loss_curve(tiny_model_dir: Path) -> None:
    for name in (
        "model.safetensors",
        "config.json",
        "vocab.json",
        "metrics.json",
        "history.json",
        "loss.png",
    ):
        assert (tiny_model_dir / name).is_file(), name
    history = json.loads((tiny_model_dir / "history.json").read_text())
    assert history[-1]["valid_loss"] < history[0]["valid_loss"]
    assert {"train_loss", "valid_ppl", "tokens_per_s", "lr"} <= set(history[0])


def test_max_steps_and_time_budget_stop_training(tiny_pairs_file: Path, tmp_path: Path) -> None:
    result = train_tiny(tmp_path / "a", tiny_pairs_file, max_steps=3)
    assert result.steps == 3 and result.stopped_because == "max_steps"
    result = train_tiny(tmp_path / "b", tiny_pairs_file, time_budget_minutes=1e-6)
    assert result.stopped_because == "time_budget" and result.steps == 1


@pytest.mark.slow  # trains its own tiny models
def test_resume_continues_the_saved_run(tiny_pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = train_tiny(out, tiny_pairs_file, max_epochs=2)
    training, model = tiny_settings(max_epochs=4)
    resumed = train_from_sources(
        [str(tiny_pairs_file)],
        out,
        training,
        model,
        TextSettings(),
        resume=True,
        show_progress=False,
    )
    assert first.epochs == 2 and resumed.epochs == 4
    assert resumed.steps == 2 * first.steps
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]


@pytest.mark.slow  # trains its own tiny models
def test_a_second_stage_starts_from_the_checkpoint_with_a_fresh_schedule(
    tiny_model_dir: Path, tiny_pairs_file: Path, tmp_path: Path
) -> None:
    parent = load_checkpoint(tiny_model_dir)
    training, _ = tiny_settings(max_steps=4, learning_rate=1e-9, warmup_steps=0)
    # Sizes given here are not used: the checkpoint's are.
    other_sizes = ModelSettings(embedding_dim=8, hidden_size=8, num_layers=1)
    result = train_from_sources(
        [str(tiny_pairs_file)],
        tmp_path / "stage2",
        training,
        other_sizes,
        TextSettings(),
        init_from=tiny_model_dir,
        show_progress=False,
    )
    child = load_checkpoint(tmp_path / "stage2")
    assert child.model_settings == parent.model_settings
    assert child.vocab.itos == parent.vocab.itos and child.recipe == parent.recipe
    # A fresh schedule: its own four steps from zero, not the parent's step count ...
    assert result.steps == 4 and [h["step"] for h in result.history][-1] == 4
    # ... from the parent's weights (a learning rate of 1e-9 leaves them all but unchanged).
    for name, tensor in parent.model.state_dict().items():
        assert torch.allclose(child.model.state_dict()[name], tensor, atol=1e-5), name
    assert child.info["init_from"]["path"] == str(tiny_model_dir)
    assert child.info["init_from"]["steps"] == parent.info["steps"]


@pytest.mark.slow  # trains its own tiny models
def test_a_second_stage_keeps_the_direction(
    tiny_model_dir: Path, tiny_pairs_file: Path, tmp_path: Path
) -> None:
    training, model = tiny_settings(max_steps=1)
    with pytest.raises(CheckpointError, match="a forward model: drop --reverse"):
        train_from_sources(
            [str(tiny_pairs_file)],
            tmp_path / "stage2",
            training,
            model,
            TextSettings(),
            init_from=tiny_model_dir,
            reverse=True,
            show_progress=False,
        )


@pytest.mark.slow  # trains its own tiny models
def test_same_seed_gives_the_same_model(tiny_pairs_file: Path, tmp_path: Path) -> None:
    train_tiny(tmp_path / "a", tiny_pairs_file, max_epochs=2)
    train_tiny(tmp_path / "b", tiny_pairs_file, max_epochs=2)
    a = load_checkpoint(tmp_path / "a").model.state_dict()
    b = load_checkpoint(tmp_path / "b").model.state_dict()
    assert all((a[k] == b[k]).all() for k in a)


@pytest.mark.slow  # trains its own tiny models
def test_bf16_autocast_trains(tiny_pairs_file: Path, tmp_path: Path) -> None:
    result = train_tiny(tmp_path / "bf16", tiny_pairs_file, bf16=True, max_epochs=3)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.slow  # trains its own tiny models
def test_lstm_cell_trains(tiny_pairs_file: Path, tmp_path: Path) -> None:
    training, model = tiny_settings(max_epochs=2)
    result = train_from_sources(
        [str(tiny_pairs_file)],
        tmp_path / "lstm",
        training,
        model.model_copy(update={"cell": "lstm"}),
        TextSettings(),
        show_progress=False,
    )
    assert result.epochs == 2
    assert Responder(tmp_path / "lstm").reply(["hello"])


@pytest.mark.parametrize("scale", [1e-3, 10.0])  # under and over the clipping norm
def test_clip_gradients_gives_clip_grad_norms_gradients(scale: float) -> None:
    torch.manual_seed(0)
    model = Seq2Seq(ModelSettings(embedding_dim=8, hidden_size=8), 30)
    grads = [torch.randn_like(p) * scale for p in model.parameters()]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()
    clip_gradients(model, 5.0)
    ours = [p.grad for p in model.parameters() if p.grad is not None]
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    theirs = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(ours) == len(theirs) == len(grads)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
