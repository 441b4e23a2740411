"""Callbacks: behaviour added to the training loop without subclassing the trainer.

Hooks receive the ``Trainer``. ``on_loss`` may return a new loss tensor (knowledge transfer uses it).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from llmkt.training.trainer import Trainer


class Callback:
    def on_fit_start(self, trainer: "Trainer") -> None: ...

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...

    def on_loss(self, trainer: "Trainer", batch: dict[str, torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        return loss

    def on_batch_end(self, trainer: "Trainer", loss: float) -> None: ...

    def epoch_logs(self, trainer: "Trainer") -> dict[str, float]:
        """Values this callback adds to the epoch's logs (called before ``on_epoch_end``)."""
        return {}

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, Any]) -> None: ...

    def epoch_tag(self, trainer: "Trainer", epoch: int) -> str | None:
        """A short tag for the epoch's log line (e.g. the transfer phase), or None."""
        return None

    def on_fit_end(self, trainer: "Trainer") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class EarlyStopping(Callback):
    """Stop when the monitored validation metric has not improved for ``patience`` evaluations."""

    def __init__(self, monitor: str, patience: int, mode: str = "max"):
        self.monitor, self.patience, self.mode = monitor, patience, mode
        self.best = -math.inf if mode == "max" else math.inf
        self.bad = 0

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, Any]) -> None:
        key = f"valid/{self.monitor}"
        if key not in logs:
            return
        v = logs[key]
        better = v > self.best if self.mode == "max" else v < self.best
        if better:
            self.best, self.bad = v, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad = state["best"], state["bad"]


class CSVLogger(Callback):
    """Appends one row per epoch to ``metrics.csv`` (columns grow as new keys appear)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, Any]) -> None:
        self.rows.append({"epoch": epoch, **logs})
        keys: list[str] = []
        for r in self.rows:
            keys.extend(k for k in r if k not in keys)
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.rows)
        tmp.replace(self.path)


class TensorBoardLogger(Callback):
    def __init__(self, log_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover - depends on the optional extra
            raise ImportError("output.loggers has 'tensorboard' but tensorboard is not installed; "
                              "pip install 'llmkt[tensorboard]'.") from e
        self.writer = SummaryWriter(str(log_dir))

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, Any]) -> None:
        for k, v in logs.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer: "Trainer") -> None:
        self.writer.close()


class MLflowLogger(Callback):
    def __init__(self, run_name: str, params: dict[str, Any]):
        try:
            import mlflow
        except ImportError as e:  # pragma: no cover - depends on the optional extra
            raise ImportError("output.loggers has 'mlflow' but mlflow is not installed; "
                              "pip install 'llmkt[mlflow]'.") from e
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run_name)
        mlflow.log_params({k: json.dumps(v) if not isinstance(v, (int, float, str)) else v
                           for k, v in params.items()})

    def on_epoch_end(self, trainer: "Trainer", epoch: int, logs: dict[str, Any]) -> None:
        self.mlflow.log_metrics({k.replace("@", "_at_"): float(v) for k, v in logs.items()
                                 if isinstance(v, (int, float))}, step=epoch)

    def on_fit_end(self, trainer: "Trainer") -> None:
        self.mlflow.end_run()
