"""Data-parallel training across processes (and nodes) with `torch.distributed`.

`launch` starts the processes with torchrun's machinery (`torch.distributed.launcher`, the
elastic agent that `python -m torch.distributed.run` uses): `nproc_per_node` processes here,
and on `nnodes` nodes that meet at a c10d rendezvous endpoint. No restarts: a process that dies
fails the launch, which says which rank died and why (`RankFailed`).

In each process, `DataParallel.start` joins the process group (gloo on the CPU, NCCL on CUDA)
and is what the `Trainer` uses to train as one:
- every rank builds the same global batch of `batch_size x world_size` pairs (same data, same
  seed) and trains on its share of the rows (`shard`), so every rank takes the same number of
  steps;
- each rank's loss is its summed token loss divided by the global batch's token count, and the
  gradients are summed across ranks (`all_reduce_gradients`): the gradient of the mean token
  loss over the whole global batch, exactly what one process training on that batch computes
  (a plain average of per-rank means would weight the tokens of a shard with short replies
  more). Every rank then clips and steps its optimizer on identical gradients, so the weights
  stay identical without being sent again;
- the time-budget stop is agreed each step (`agree`: any rank out of time stops them all, and
  they share the longest elapsed time, which drives the learning-rate schedule);
- one rank, the main rank, validates and writes checkpoints; the others receive its validation
  loss (`broadcast_float`) so that early stopping and the plateau rule decide alike.

Only tensors and JSON cross the process group: weights as tensors (`broadcast_checkpoint`),
everything else as JSON text (`broadcast_json`), never pickles, which would run code on receipt.
"""

from __future__ import annotations

import json
import os
import signal
import uuid
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from config import ModelSettings, TextSettings
from nlp.checkpoint import Checkpoint
from nlp.datasets import Batch
from nlp.device import resolve_device
from nlp.recipe import DataRecipe
from nlp.seq2seq import Seq2Seq
from nlp.vocabulary import PAD_ID, Vocabulary

# How long a rank waits for the others in one collective: the main rank validating, a slow
# node. A rank that died ends the wait at once (its connections close); this bounds a hang.
COLLECTIVE_TIMEOUT = timedelta(minutes=30)


class RankFailed(RuntimeError):
    """A process of a data-parallel launch failed: which rank, and why."""

    def __init__(self, rank: int, world_size: int, reason: str) -> None:
        super().__init__(f"rank {rank} of {world_size} {reason}")
        self.rank, self.world_size, self.reason = rank, world_size, reason


@dataclass(frozen=True)
class DataParallel:
    """This process's place in the process group (see the module docstring)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device
    main_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == self.main_rank

    @classmethod
    def start(cls, device: str = "auto") -> DataParallel:
        """Join the process group that `launch` (torchrun) set up in the environment: NCCL with
        one GPU per local rank when `device` is CUDA, gloo on the CPU."""
        local_rank = int(os.environ["LOCAL_RANK"])
        chosen = resolve_device(device)
        if chosen.type == "cuda":
            chosen = torch.device("cuda", local_rank)
            torch.cuda.set_device(chosen)
        elif chosen.type != "cpu":
            raise ValueError(f"data-parallel training runs on CPUs or CUDA GPUs, not {chosen}")
        dist.init_process_group(
            backend="nccl" if chosen.type == "cuda" else "gloo",
            timeout=COLLECTIVE_TIMEOUT,
            device_id=chosen if chosen.type == "cuda" else None,
        )
        return cls(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=local_rank,
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
            device=chosen,
        )

    def with_main(self, holders: list[bool]) -> DataParallel:
        """The main rank is the first of the ranks that hold the job (`holders`, one flag per
        rank in rank order): rank 0 on one node; on several, the first rank on the node that
        started the run (where the job is, and where the result must be written)."""
        if True not in holders:
            raise ValueError("no rank holds the job: start the run on one node without --join")
        return replace(self, main_rank=holders.index(True))

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    # ---- collectives ---------------------------------------------------------------------------

    def gather_ints(self, value: int) -> list[int]:
        """Every rank's `value`, in rank order."""
        mine = torch.tensor([value], dtype=torch.int64, device=self.device)
        every = [torch.zeros_like(mine) for _ in range(self.world_size)]
        dist.all_gather(every, mine)
        return [int(t.item()) for t in every]

    def gather_flags(self, flag: bool) -> list[bool]:
        """Every rank's `flag`, in rank order."""
        return [bool(value) for value in self.gather_ints(int(flag))]

    def agree(self, stop: bool, elapsed: float) -> tuple[bool, float]:
        """Stop if any rank says so; the longest elapsed time of all ranks."""
        values = torch.tensor([1.0 if stop else 0.0, elapsed], dtype=torch.float64)
        values = values.to(self.device)
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return bool(values[0].item()), float(values[1].item())

    def all_reduce_gradients(self, model: torch.nn.Module, loss: float) -> float:
        """Sum every parameter's gradient (a missing one counts as zeros) and `loss` across
        ranks, in one collective; returns the summed loss."""
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat(
            [g.reshape(-1) for g in grads] + [torch.tensor([loss], device=self.device)]
        )
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for param in params:
            size = param.numel()
            param.grad = flat[offset : offset + size].view_as(param)
            offset += size
        return float(flat[offset].item())

    def broadcast_float(self, value: float) -> float:
        """The main rank's `value` on every rank."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=self.main_rank)
        return float(tensor.item())

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """The main rank's `data` (others pass None) on every rank."""
        size = torch.tensor([len(data) if data is not None else 0], dtype=torch.int64)
        size = size.to(self.device)
        dist.broadcast(size, src=self.main_rank)
        if self.is_main:
            assert data is not None
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(self.device)
        else:
            buffer = torch.empty(int(size.item()), dtype=torch.uint8, device=self.device)
        dist.broadcast(buffer, src=self.main_rank)
        return data if data is not None else bytes(buffer.cpu().numpy().tobytes())

    def broadcast_json(self, value: Any = None) -> Any:
        """The main rank's JSON-able `value` on every rank."""
        text = json.dumps(value).encode() if self.is_main else None
        return json.loads(self.broadcast_bytes(text))

    def broadcast_checkpoint(self, checkpoint: Checkpoint | None) -> Checkpoint:
        """The main rank's checkpoint (model on this rank's device) on every rank: its settings
        and vocabulary as JSON, then every weight tensor."""
        described = (
            {
                "model_settings": checkpoint.model_settings.model_dump(mode="json"),
                "text_settings": checkpoint.text_settings.model_dump(mode="json"),
                "recipe": checkpoint.recipe.model_dump(mode="json"),
                "vocab": checkpoint.vocab.itos,
                "metrics": checkpoint.metrics,
                "info": checkpoint.info,
            }
            if checkpoint is not None
            else None
        )
        spec = self.broadcast_json(described)
        if checkpoint is None:
            vocab = Vocabulary(spec["vocab"])
            model_settings = ModelSettings.model_validate(spec["model_settings"])
            checkpoint = Checkpoint(
                Seq2Seq(model_settings, len(vocab)),
                vocab,
                model_settings,
                TextSettings.model_validate(spec["text_settings"]),
                DataRecipe.model_validate(spec["recipe"]),
                spec["metrics"],
                spec["info"],
            )
        checkpoint.model.to(self.device)
        with torch.no_grad():
            for tensor in checkpoint.model.state_dict().values():  # views of the weights
                dist.broadcast(tensor, src=self.main_rank)
        return checkpoint

    def barrier(self) -> None:
        dist.barrier()

    # ---- data ----------------------------------------------------------------------------------

    def shard(self, batch: Batch) -> Batch | None:
        """This rank's rows of a global batch (every `world_size`-th row, so the ranks get rows
        of similar lengths), padding trimmed; None when the batch has fewer rows than ranks."""
        rows = torch.arange(self.rank, batch.src.size(0), self.world_size)
        if rows.numel() == 0:
            return None
        src, trg_in, trg_out = batch.src[rows], batch.trg_in[rows], batch.trg_out[rows]
        src_len = int(batch.src_lengths[rows].max())
        trg_len = int(trg_out.ne(PAD_ID).sum(1).max())
        return Batch(
            src=src[:, :src_len].contiguous(),
            src_lengths=batch.src_lengths[rows],
            trg_in=trg_in[:, :trg_len].contiguous(),
            trg_out=trg_out[:, :trg_len].contiguous(),
        )


@dataclass(frozen=True)
class Rendezvous:
    """Where the nodes of a launch meet: one node (a free local port) unless `nnodes` > 1."""

    nnodes: int = 1
    endpoint: str | None = None  # host:port, needed with several nodes
    run_id: str = "chatbot-retrain"


def launch(
    command: list[str],
    *,
    nproc_per_node: int,
    rendezvous: Rendezvous,
    log_dir: Path | None = None,
) -> None:
    """Run `command` (a program and its arguments) as `nproc_per_node` ranks on this node, with
    the other nodes of `rendezvous`; returns when every rank succeeded, raises `RankFailed` for
    the first rank that failed (the others are stopped then)."""
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    single = rendezvous.nnodes == 1
    if not single and not rendezvous.endpoint:
        raise ValueError("a launch on several nodes needs a rendezvous endpoint (host:port)")
    config = LaunchConfig(
        min_nodes=rendezvous.nnodes,
        max_nodes=rendezvous.nnodes,
        nproc_per_node=nproc_per_node,
        run_id=f"{rendezvous.run_id}-{uuid.uuid4().hex[:8]}" if single else rendezvous.run_id,
        rdzv_backend="c10d",
        # One node: torchrun --standalone's rendezvous, on a free local port.
        rdzv_endpoint="localhost:0" if single else str(rendezvous.endpoint),
        rdzv_configs={} if single else {"timeout": 900},
        max_restarts=0,  # a failed rank fails the run
        monitor_interval=0.1,
        logs_specs=DefaultLogsSpecs(log_dir=str(log_dir) if log_dir else None),
    )
    program, *arguments = command
    try:
        elastic_launch(config, program)(*arguments)
    except ChildFailedError as failed:
        world_size = nproc_per_node * rendezvous.nnodes
        rank, reason = root_cause(failed)
        raise RankFailed(rank, world_size, reason) from None


def root_cause(failed: Any) -> tuple[int, str]:
    """The failure that caused the others: a rank killed by a signal (the OOM killer, a crash,
    kill -9) before one that raised (its peers raise when it vanishes), the earliest of those,
    and a rank the agent stopped (SIGTERM) because another had failed last."""
    failures: dict[int, Any] = failed.failures
    rank, failure = min(
        failures.items(),
        key=lambda item: (
            item[1].exitcode == -signal.SIGTERM,
            item[1].exitcode >= 0,
            item[1].timestamp,
            item[0],
        ),
    )
    code = int(failure.exitcode)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return rank, f"was killed by signal {-code} ({name})"
    message = str(failure.message or "").strip()
    if message in ("", "<NONE>") or message.startswith("To enable traceback"):
        return rank, f"failed (exit code {code})"
    return rank, f"failed (exit code {code}): {' '.join(message.split())}"
