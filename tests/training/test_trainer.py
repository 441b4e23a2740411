import math

import pandas as pd
import pytest

import llmkt
from llmkt.data import Dataset
from llmkt.training.callbacks import Callback, EarlyStopping
from tests.conftest import random_interactions


def _cfg(tmp_path, **training):
    return {"model": {"name": "sasrec", "max_len": 10, "hidden": 16, "n_heads": 2, "dropout": 0.2},
            "training": {"epochs": 3, "batch_size": 8, "lr": 0.01, "progress": False, "seed": 7, **training},
            "evaluation": {"ks": [5, 10]},
            "output": {"dir": str(tmp_path)}}


@pytest.fixture(scope="module")
def small():
    return Dataset.from_frames(random_interactions(n_users=40, n_items=30, per_user=10), name="small")


def test_same_seed_gives_identical_metrics(tmp_path, small):
    a = llmkt.train(_cfg(tmp_path, deterministic=True), data=small)
    b = llmkt.train(_cfg(tmp_path, deterministic=True), data=small)
    assert a.test.metrics == b.test.metrics
    assert [h["train/loss"] for h in a.history] == [h["train/loss"] for h in b.history]
    c = llmkt.train(_cfg(tmp_path, seed=8), data=small)
    assert [h["train/loss"] for h in c.history] != [h["train/loss"] for h in a.history]


def test_resume_continues_exactly(tmp_path, small):
    full = llmkt.train(_cfg(tmp_path, epochs=4), data=small)
    part = llmkt.train(_cfg(tmp_path, epochs=2) | {"output": {"dir": str(tmp_path), "name": "r"}}, data=small)
    resumed = llmkt.train(_cfg(tmp_path, epochs=4) | {"output": {"dir": str(tmp_path), "name": "r"}}, data=small,
                          resume_from=part.run_dir)
    assert [h["train/loss"] for h in resumed.history] == pytest.approx([h["train/loss"] for h in full.history],
                                                                       abs=1e-6)
    assert resumed.test.metrics == pytest.approx(full.test.metrics, abs=1e-6)
    # per-epoch CSV holds all four epochs once
    rows = pd.read_csv(resumed.run_dir / "metrics.csv")
    assert rows["epoch"].tolist() == [1, 2, 3, 4]


def test_run_folder_contents_and_best_checkpoint(tmp_path, small):
    res = llmkt.train(_cfg(tmp_path), data=small)
    for f in ("config.yaml", "metrics.csv", "results.json", "test_per_user.csv", "best.pt", "last.pt"):
        assert (res.run_dir / f).exists(), f
    rows = pd.read_csv(res.run_dir / "metrics.csv")
    assert {"train/loss", "epoch_seconds", "epoch_cpu_seconds", "valid/NDCG@10"} <= set(rows.columns)
    best = rows["valid/NDCG@10"].max()
    assert res.valid.metrics["NDCG@10"] == pytest.approx(best)
    assert res.best_epoch == int(rows.loc[rows["valid/NDCG@10"].idxmax(), "epoch"])
    cfg_back = llmkt.load_config(res.run_dir / "config.yaml")
    assert cfg_back == res.config


def test_early_stopping_stops():
    class T:
        should_stop = False

    es = EarlyStopping("NDCG@10", patience=2)
    t = T()
    for epoch, v in enumerate([0.1, 0.2, 0.15, 0.19], start=1):
        es.on_epoch_end(t, epoch, {"valid/NDCG@10": v})
    assert t.should_stop and es.best == 0.2


def test_nan_loss_fails_clearly(tmp_path, small):
    class Poison(Callback):
        def on_loss(self, trainer, batch, loss):
            return loss * math.nan

    with pytest.raises(FloatingPointError, match="training.lr"):
        llmkt.train(_cfg(tmp_path), data=small, extra_callbacks=[Poison()])
    # the crash left the run folder without a half-written checkpoint
    assert not list(tmp_path.glob("*/*.tmp"))
