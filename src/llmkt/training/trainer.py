"""A small training loop with callbacks, early stopping, best checkpoint, resume and per-epoch logs.

Why not Lightning: see ``docs/decisions.md``. The loop is ~150 lines, adds no per-step overhead, and exposes the
hooks knowledge transfer needs (``on_loss``) without a LightningModule per model.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch
from tqdm.auto import tqdm

from llmkt.errors import ConfigError, DataError
from llmkt.evaluation.ranking import EvalResult
from llmkt.training.callbacks import Callback
from llmkt.training.checkpoint import load_checkpoint, save_checkpoint
from llmkt.training.distributed import (DistContext, all_reduce_grads, broadcast_flag, broadcast_params,
                                        broadcast_state, wrap)
from llmkt.training.seeding import rng_state, set_rng_state

Batch = dict[str, torch.Tensor]


class BatchSource(Protocol):
    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterable[Batch]: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device='cuda' but no CUDA device is available here; use 'auto' (GPU when there "
                          "is one) or 'cpu'.")
    return torch.device(name)


class Trainer:
    """Trains ``model`` by ``model.loss(batch)``; validates with ``validate(model) -> EvalResult``.

    ``monitor`` (e.g. ``"NDCG@10"``) selects the best epoch on validation; the best weights are restored at the
    end of ``fit``. With ``run_dir``, ``last.pt`` (everything needed to resume) and ``best.pt`` (weights) are
    written atomically after every epoch.
    """

    def __init__(self, model: torch.nn.Module, *, epochs: int, lr: float = 1e-3, weight_decay: float = 0.0,
                 grad_clip: float | None = None, monitor: str = "NDCG@10", eval_every: int = 1,
                 callbacks: list[Callback] | None = None, run_dir: str | Path | None = None,
                 device: torch.device | str = "cpu", progress: bool = True,
                 optimizer: torch.optim.Optimizer | None = None, label: str | None = None,
                 dist: DistContext | None = None, extra_params: list[torch.nn.Parameter] | None = None):
        self.model = model.to(device)
        # multi-process training (llmkt.training.distributed): the loss goes through a DDP module; parameters
        # outside the model (``extra_params``, e.g. a transfer head) are all-reduced by hand; rank 0 validates
        self.dist, self.extra_params = dist, list(extra_params or [])
        self._loss = model.loss
        self.device = torch.device(device)
        self.epochs, self.grad_clip, self.monitor, self.eval_every = epochs, grad_clip, monitor, eval_every
        self.callbacks = list(callbacks or [])
        self.run_dir = Path(run_dir) if run_dir else None
        self.progress = progress
        self.label = label  # shown on every epoch line, e.g. "sasrec base" / "sasrec transfer"
        self.optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.epoch = 0  # epochs completed
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []
        self.should_stop = False

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": self.epoch,
                "best_score": self.best_score, "best_epoch": self.best_epoch, "history": self.history,
                "best_state": self.best_state, "rng": rng_state(),
                "callbacks": [cb.state_dict() for cb in self.callbacks]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.best_score, self.best_epoch = state["epoch"], state["best_score"], state["best_epoch"]
        self.history, self.best_state = state["history"], state["best_state"]
        set_rng_state(state["rng"])
        for cb, s in zip(self.callbacks, state.get("callbacks", [])):
            cb.load_state_dict(s)

    def resume(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "last.pt"
        if not path.exists():
            raise DataError(f"resume: no checkpoint at {path}; pass a run folder or its last.pt.")
        # weights_only: a checkpoint is tensors and plain values, never objects that could run code when read.
        # Loaded on the CPU: RNG states must stay CPU tensors; weights and optimizer state are copied to the
        # parameters' device by load_state_dict.
        state = load_checkpoint(path, "resume")
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataError(f"resume: {path} does not match this run (model, optimizer or callbacks differ: "
                            f"{type(e).__name__}: {str(e).splitlines()[0][:200]}); resume with the run's own "
                            "config.yaml.") from None

    # -- loop --------------------------------------------------------------------------------------------------
    def _to_device(self, batch: Batch) -> Batch:
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def train_epoch(self, batches: BatchSource, epoch: int) -> dict[str, float]:
        self.model.train()
        total, n = 0.0, 0
        # a bar only on a terminal: in a log file its carriage-return frames are noise (epoch lines remain)
        bar = tqdm(batches.epoch(epoch), total=len(batches), desc=f"epoch {epoch}",
                   disable=not (self.progress and sys.stderr.isatty()), leave=False, dynamic_ncols=True)
        for batch in bar:
            batch = self._to_device(batch)
            loss = self._loss(batch)
            for cb in self.callbacks:
                loss = cb.on_loss(self, batch, loss)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch}: loss became {loss.item()}; lower training.lr or set "
                                         "training.grad_clip.")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.dist is not None and self.extra_params:
                all_reduce_grads(self.extra_params, self.dist.world_size)
            if self.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
            value = float(loss.detach())
            total, n = total + value, n + 1
            for cb in self.callbacks:
                cb.on_batch_end(self, value)
            bar.set_postfix(loss=f"{total / n:.4f}")
        return {"train/loss": total / max(n, 1)}

    def fit(self, batches: BatchSource, validate: Callable[[torch.nn.Module], EvalResult] | None = None,
            resume_from: str | Path | None = None) -> "Trainer":
        if resume_from is not None:
            self.resume(resume_from)
        if self.dist is not None:
            self._loss = wrap(self.model, self.dist, self.device)  # broadcasts rank 0's model parameters
            broadcast_params(self.extra_params)
            if not self.dist.is_main:
                validate = None  # rank 0 validates, keeps the best weights and decides when to stop
        if self.run_dir:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        for cb in self.callbacks:
            cb.on_fit_start(self)
        try:
            while self.epoch < self.epochs and not self.should_stop:
                epoch = self.epoch + 1
                for cb in self.callbacks:
                    cb.on_epoch_start(self, epoch)
                t0, c0 = time.perf_counter(), time.process_time()
                logs: dict[str, Any] = self.train_epoch(batches, epoch)
                logs["epoch_seconds"] = time.perf_counter() - t0
                # CPU seconds of this process (all threads): robust to other jobs on the machine
                logs["epoch_cpu_seconds"] = time.process_time() - c0
                for cb in self.callbacks:
                    logs.update(cb.epoch_logs(self))
                if validate is not None and (epoch % self.eval_every == 0 or epoch == self.epochs):
                    t1 = time.perf_counter()
                    self.model.eval()
                    result = validate(self.model)
                    logs.update({f"valid/{k}": v for k, v in result.metrics.items()})
                    logs["valid_seconds"] = time.perf_counter() - t1
                    score = result.metrics[self.monitor]
                    if score > self.best_score:
                        self.best_score, self.best_epoch = score, epoch
                        self.best_state = copy.deepcopy(self.model.state_dict())
                        if self.run_dir:
                            save_checkpoint(self.best_state, self.run_dir / "best.pt")
                self.epoch = epoch
                self.history.append({"epoch": epoch, **logs})
                for cb in self.callbacks:
                    cb.on_epoch_end(self, epoch, logs)
                if self.dist is not None:
                    self.should_stop = broadcast_flag(self.should_stop, self.device)
                if self.progress:
                    shown = {k: round(v, 4) for k, v in logs.items() if k in ("train/loss", "epoch_seconds")
                             or k == f"valid/{self.monitor}"}
                    tags = [tag for cb in self.callbacks if (tag := cb.epoch_tag(self, epoch))]
                    head = f"[{', '.join(([self.label] if self.label else []) + tags)}] " if self.label or tags else ""
                    tqdm.write(f"{head}epoch {epoch}/{self.epochs} {shown}")
                if self.run_dir:
                    save_checkpoint(self.state_dict(), self.run_dir / "last.pt")
        finally:
            self._loss = self.model.loss
            for cb in self.callbacks:
                cb.on_fit_end(self)
        if validate is None:
            self.best_state, self.best_epoch = copy.deepcopy(self.model.state_dict()), self.epoch
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        if self.dist is not None:  # every rank ends with the weights rank 0 chose on validation
            broadcast_state(self.model)
        return self
