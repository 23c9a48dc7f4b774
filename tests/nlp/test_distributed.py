"""Data-parallel training (`nlp.distributed`): N processes with batch B train as one process
with batch N x B."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from nlp.datasets import bucketed_batches
from nlp.distributed import DataParallel, RankFailed, root_cause
from nlp.training import batch_loss
from tests.support.data_parallel import tiny_data, tiny_trainer, train_single

REPO_ROOT = Path(__file__).resolve().parents[2]


def _rank(rank: int, world_size: int) -> DataParallel:
    """A rank's view for the data helpers (no process group needed for `shard`)."""
    return DataParallel(rank, world_size, rank, world_size, torch.device("cpu"))


def test_the_shards_of_a_global_batch_are_its_rows_split_among_the_ranks(tmp_path: Path) -> None:
    _, pairs = tiny_data()
    batch = next(bucketed_batches(pairs, 7, shuffle=True, seed=3))
    shards = [_rank(r, 3).shard(batch) for r in range(3)]
    assert [s.src.size(0) for s in shards if s is not None] == [3, 2, 2]
    rows = sorted(
        (tuple(s.src[i, : s.src_lengths[i]].tolist()), tuple(s.trg_out[i].tolist()))
        for s in shards
        if s is not None
        for i in range(s.src.size(0))
    )
    whole = [
        (tuple(batch.src[i, : batch.src_lengths[i]].tolist()), tuple(batch.trg_out[i].tolist()))
        for i in range(batch.src.size(0))
    ]
    # The same rows, each once (a shard's padding is trimmed to its own longest row).
    assert [(src, tuple(t for t in trg if t)) for src, trg in rows] == sorted(
        (src, tuple(t for t in trg if t)) for src, trg in whole
    )
    assert _rank(1, 2).shard(next(bucketed_batches(pairs[:1], 4, shuffle=False))) is None


def test_summed_shard_losses_over_the_global_token_count_give_the_global_batch_gradient(
    tmp_path: Path,
) -> None:
    """What `Trainer.data_parallel_step` sums across ranks is exactly one process's gradient of
    the global batch's mean token loss (float rounding aside); a plain mean of the ranks' means
    would not be, when the shards hold different numbers of tokens."""
    _, pairs = tiny_data()
    model = tiny_trainer(tmp_path, 6, 1, None).model
    batch = next(bucketed_batches(pairs, 6, shuffle=True, seed=11))
    loss, tokens = batch_loss(model, batch)
    loss.backward()
    whole = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    shard_tokens = []
    for rank in range(2):
        shard = _rank(rank, 2).shard(batch)
        assert shard is not None
        summed, n = batch_loss(model, shard, reduction="sum")
        (summed / tokens).backward()
        shard_tokens.append(n)
    assert sum(shard_tokens) == tokens and shard_tokens[0] != shard_tokens[1]
    for name, grad in whole.items():
        summed_grad = dict(model.named_parameters())[name].grad
        assert summed_grad is not None
        torch.testing.assert_close(summed_grad, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.slow  # three processes (the launcher and two ranks) start torch
def test_two_processes_with_batch_b_train_as_one_process_with_batch_2b(tmp_path: Path) -> None:
    """Six steps, batch 3 per rank against batch 6, dropout off, float32 on the CPU. Tolerance:
    1e-4 absolute on every weight (each step moves a weight by up to the learning rate, 0.01):
    the gradients agree to float rounding (~1e-8), which Adam's first steps can magnify where a
    gradient is near its epsilon (measured: up to 2.6e-5)."""
    steps = 6
    launcher = [sys.executable, "-m", "tests.support.data_parallel", "launch", str(tmp_path)]
    launched = subprocess.run(
        [*launcher, "2", "3", str(steps)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]

    single = train_single(tmp_path / "single", 6, steps)

    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2)]
    assert ranks[0].keys() == single.keys()
    for name, weight in single.items():
        assert torch.equal(ranks[0][name], ranks[1][name]), f"the ranks disagree on {name}"
        torch.testing.assert_close(ranks[0][name], weight, rtol=0, atol=1e-4)
        assert not torch.equal(weight, tiny_trainer(tmp_path, 6, 1, None).model.state_dict()[name])
    # Only the main rank validated and wrote a checkpoint.
    assert (tmp_path / "checkpoint-rank0" / "model.safetensors").is_file()
    assert not (tmp_path / "checkpoint-rank1").exists()


def _failure(exitcode: int, timestamp: int, message: str = "<NONE>") -> SimpleNamespace:
    return SimpleNamespace(exitcode=exitcode, timestamp=timestamp, message=message)


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        # rank 1 killed; the agent then stopped rank 0 (in the same second, or the next)
        ({0: _failure(-15, 7), 1: _failure(-9, 7)}, "rank 1 of 2 was killed by signal 9 (SIGKILL)"),
        ({0: _failure(-15, 8), 1: _failure(-9, 7)}, "rank 1 of 2 was killed by signal 9 (SIGKILL)"),
        # rank 0 raised when its peer vanished, and its error file's time is the earlier one
        (
            {0: _failure(1, 6, "RuntimeError: Connection closed by peer"), 1: _failure(-9, 7)},
            "rank 1 of 2 was killed by signal 9 (SIGKILL)",
        ),
        # rank 1 raised first; rank 0 followed it
        (
            {
                0: _failure(1, 9, "RuntimeError: Connection closed by peer"),
                1: _failure(1, 8, "ValueError:  no   pairs\nleft"),
            },
            "rank 1 of 2 failed (exit code 1): ValueError: no pairs left",
        ),
        ({0: _failure(3, 8)}, "rank 0 of 2 failed (exit code 3)"),
    ],
)
def test_a_failed_launch_names_the_rank_that_failed_first_not_those_stopped_after_it(
    failures: dict[int, SimpleNamespace], expected: str
) -> None:
    rank, reason = root_cause(SimpleNamespace(failures=failures))
    assert str(RankFailed(rank, 2, reason)) == expected
