"""End-to-end runs on the real ml-100k (../shared/data): 2 epochs, full ranking, each under a minute."""

import json
import os
import subprocess
import sys
import time

import pytest

import llmkt
from tests.conftest import REPO


@pytest.mark.realdata
@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_two_epochs_on_ml100k_under_a_minute(shared_data, tmp_path, model):
    t0 = time.perf_counter()
    res = llmkt.train(REPO / "configs" / "sasrec_ml100k.yaml",
                      [f"model={{name: {model}}}", "training.epochs=2", f"data.data_dir={shared_data}",
                       f"output.dir={tmp_path}", "training.progress=false"])
    elapsed = time.perf_counter() - t0
    assert elapsed < 60, f"{model}: {elapsed:.1f}s"
    assert res.test.per_user.shape[0] == 943
    assert 0.0 < res.test.metrics["NDCG@10"] < 1.0 and res.test.metrics["HR@10"] >= res.test.metrics["NDCG@10"]
    assert "full ranking" in res.test.protocol
    assert len(res.history) == 2


@pytest.mark.realdata
def test_cli_train_prints_test_metrics_and_reports_errors(shared_data, tmp_path):
    config = str(REPO / "configs" / "sasrec_ml100k.yaml")
    cmd = [sys.executable, "-m", "llmkt.cli", "train", config, "--data-dir", str(shared_data),
           "--set", "training.epochs=1", "--set", f"output.dir={tmp_path}", "--set", "training.progress=false",
           "--json-out"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["test"]["NDCG@10"] > 0 and summary["model"] == "sasrec"
    ev = subprocess.run([sys.executable, "-m", "llmkt.cli", "evaluate", summary["run_dir"]], capture_output=True,
                        text=True, timeout=120, env={**os.environ, "LLMKT_DATA": str(shared_data)})
    assert ev.returncode == 0, ev.stderr
    assert f"NDCG@10={summary['test']['NDCG@10']:.4f}" in ev.stdout  # the best checkpoint reproduces the test
    bad = subprocess.run(cmd[:5] + ["--set", "model.hiden=3"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "model.hiden: unknown key" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "llmkt.cli", "train", "--defaults", "--set", "data.name=ml-20k"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "unknown dataset 'ml-20k'" in missing.stderr


@pytest.mark.realdata
def test_cli_transfer_runs_both_phases_and_reports_both_models(shared_data, tmp_path):
    import numpy as np

    from llmkt.data import load_raw
    from llmkt.data.vectors import ProfileVectors

    raw = load_raw("ml-100k", shared_data)
    users = np.unique(raw.interactions["user_id"])
    vec = ProfileVectors(users, np.random.default_rng(0).normal(size=(len(users), 96)), {"source": "random"})
    path = vec.save(tmp_path / "vectors.npz")
    cmd = [sys.executable, "-m", "llmkt.cli", "train", str(REPO / "configs" / "sasrec_ml100k_transfer.yaml"),
           "--data-dir", str(shared_data), "--set", f"transfer.vectors.path={path}", "--set", "training.epochs=2",
           "--set", f"output.dir={tmp_path}", "--set", "training.progress=false"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "transfer: layer blocks.1 (width 64), vectors 96 -> 64 (pca), coverage 100.0%" in text
    assert "base  test:  NDCG@10=" in text and "transfer test:  NDCG@10=" in text and "paired t-test" in text
    run_dir = text.split("run: ")[1].split()[0]
    import pandas as pd

    rows = pd.read_csv(f"{run_dir}/metrics.csv")
    assert rows["kt/active"].tolist() == [1.0, 0.0]  # 2 epochs: 1 transfer + 1 fine-tuning
