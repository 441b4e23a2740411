"""TensorBoard and MLflow loggers, driven through stand-in modules (both are optional extras)."""

import sys
import types

from llmkt.training.callbacks import MLflowLogger, TensorBoardLogger


def test_tensorboard_logger_writes_scalars(monkeypatch, tmp_path):
    calls = []

    class Writer:
        def __init__(self, log_dir):
            calls.append(("init", log_dir))

        def add_scalar(self, k, v, step):
            calls.append((k, v, step))

        def flush(self):
            pass

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    lg = TensorBoardLogger(tmp_path)
    lg.on_epoch_end(None, 3, {"train/loss": 1.5, "valid/NDCG@10": 0.2, "note": "text"})
    lg.on_fit_end(None)
    assert calls == [("init", str(tmp_path)), ("train/loss", 1.5, 3), ("valid/NDCG@10", 0.2, 3), ("close",)]


def test_mlflow_logger_logs_params_and_metrics(monkeypatch):
    log = []
    fake = types.SimpleNamespace(
        start_run=lambda run_name: log.append(("start", run_name)),
        log_params=lambda p: log.append(("params", p)),
        log_metrics=lambda m, step: log.append(("metrics", m, step)),
        end_run=lambda: log.append(("end",)))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    lg = MLflowLogger("run-1", {"model": {"name": "sasrec"}, "seed": 3})
    lg.on_epoch_end(None, 2, {"valid/NDCG@10": 0.25})
    lg.on_fit_end(None)
    assert log[0] == ("start", "run-1")
    assert log[1] == ("params", {"model": '{"name": "sasrec"}', "seed": 3})
    assert log[2] == ("metrics", {"valid/NDCG_at_10": 0.25}, 2) and log[3] == ("end",)
