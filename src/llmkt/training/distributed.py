"""Multi-process training with PyTorch's DistributedDataParallel (docs/distributed.md).

Started by ``torchrun --nproc_per_node N -m llmkt train CONFIG``: torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT`` and llmkt joins the process group (gloo on CPU, NCCL on GPUs).
What each rank does:

* builds the same batches of an epoch (seeded by ``(seed, epoch)``) and keeps a disjoint shard of them: batch ``i``
  goes to rank ``i % N``; every rank takes ``len // N`` batches, so all ranks step together (the last
  ``len % N`` batches of an epoch are left out; ``training.batch_size`` is per process);
* computes ``model.loss`` through a DDP-wrapped module, so gradients are all-reduced (averaged) in backward;
  transfer hooks run on every rank (they sit on the inner model's layers); parameters that live outside the model
  (a transfer projection head) are all-reduced by hand;
* rank 0 alone validates, keeps the best weights, writes checkpoints, logs and results; the decision to stop
  (early stopping) is broadcast from rank 0 so that every rank leaves the loop at the same epoch.
"""

from __future__ import annotations

import os
from datetime import timedelta
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.distributed as dist
from torch import nn

from llmkt.errors import ConfigError

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 when not started by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; start with torchrun.") from None


def init_distributed(device: torch.device) -> DistContext | None:
    """Join the process group torchrun described (None when ``WORLD_SIZE`` is 1). gloo on CPU, NCCL on CUDA."""
    world = env_world_size()
    if world <= 1:
        return None
    missing = [k for k in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"WORLD_SIZE={world} but {missing} are not set: start multi-process training with "
                          "`torchrun --nproc_per_node N -m llmkt train CONFIG` (docs/distributed.md).")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        # a long wait is normal: the other ranks wait at the next collective while rank 0 validates or tests
        dist.init_process_group(backend=backend, timeout=timedelta(hours=2))
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]), backend)


def rank_device(device: torch.device, ctx: DistContext | None) -> torch.device:
    """On CUDA each process uses the GPU of its local rank."""
    if ctx is not None and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


class ShardedBatches:
    """Rank ``rank`` of ``world_size``'s share of a batch source: batches ``rank, rank + N, ...`` of each epoch,
    ``len(source) // N`` of them (every rank the same number of steps)."""

    def __init__(self, source, rank: int, world_size: int):
        if len(source) < world_size:
            raise ConfigError(f"an epoch has {len(source)} batches, fewer than the {world_size} processes; lower "
                              "training.batch_size or use fewer processes.")
        self.source, self.rank, self.world_size = source, rank, world_size

    def __len__(self) -> int:
        return len(self.source) // self.world_size

    def epoch(self, epoch: int) -> Iterator[Batch]:
        n = len(self) * self.world_size
        for i, batch in enumerate(self.source.epoch(epoch)):
            if i >= n:
                break
            if i % self.world_size == self.rank:
                yield batch


class LossModule(nn.Module):
    """``forward(batch) = model.loss(batch)``: what DDP wraps, so that its gradient hooks see the loss."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.model.loss(batch)


def wrap(model: nn.Module, ctx: DistContext, device: torch.device, find_unused: bool = True):
    """The DDP module computing ``model.loss``. ``find_unused``: a transfer schedule may freeze parameters and some
    models leave parameters out of a step's graph; DDP then marks them ready instead of waiting. Sparse buffers
    (LightGCN's normalised adjacency, built identically on every rank from the training pairs) are left out of
    DDP's buffer broadcast, which cannot flatten sparse tensors and would resend the graph at every step."""
    module = LossModule(model)
    sparse = [f"model.{name}" for name, b in model.named_buffers() if b.is_sparse]
    if sparse:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, sparse)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def broadcast_params(params: Iterable[nn.Parameter]) -> None:
    """Rank 0's values of parameters outside the DDP module (DDP broadcasts only its own at construction)."""
    with torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def broadcast_state(module: nn.Module) -> None:
    """Rank 0's weights and dense buffers of ``module`` on every rank, in place (after rank 0 restored its best
    epoch, so that every rank ends with the model rank 0 chose)."""
    with torch.no_grad():
        for t in module.state_dict().values():
            if not t.is_sparse:
                dist.broadcast(t, src=0)


def all_reduce_grads(params: Iterable[nn.Parameter], world_size: int) -> None:
    """Average the gradients of parameters outside the DDP module across ranks. A parameter no rank has a gradient
    for keeps ``grad = None`` (so the optimizer skips it, as in a single process); one that some ranks have a
    gradient for gets zeros on the others first (which ranks have one is all-reduced, so every rank takes part in
    the same collectives)."""
    params = list(params)
    if not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    dist.all_reduce(has, op=dist.ReduceOp.MAX)
    for p, h in zip(params, has.tolist()):
        if not h:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad /= world_size


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank."""
    t = torch.tensor([1 if flag else 0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def broadcast_text(text: str, device: torch.device, limit: int = 4096) -> str:
    """Rank 0's ``text`` (e.g. a run-folder path) on every rank, as bytes in a tensor (no pickling)."""
    t = torch.zeros(limit + 1, dtype=torch.uint8, device=device)
    if dist.get_rank() == 0:
        data = text.encode()
        if len(data) > limit:
            raise ConfigError(f"{text[:80]}...: longer than {limit} bytes.")
        t[0] = 1
        t[1:len(data) + 1] = torch.tensor(list(data), dtype=torch.uint8)
    dist.broadcast(t, src=0)
    raw = bytes(t[1:].cpu().tolist())
    return raw.rstrip(b"\0").decode()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
