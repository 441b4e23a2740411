"""Multi-process training (issue 18): two gloo processes started by torchrun train with DDP; parameters are
identical across ranks after training, the transfer hooks ran on both ranks, each rank saw a disjoint shard of the
batches, and the run folder is written once (by rank 0)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from llmkt.training.distributed import ShardedBatches
from tests.test_bad_inputs import user_vectors, write_csv_data

SCRIPT = '''
import json, os, sys
import torch
import llmkt
from llmkt.training.callbacks import Callback
from llmkt.training.trainer import Trainer

out = sys.argv[2]
rank = int(os.environ["RANK"])
fit = Trainer.fit
seen = []

class Recorder(Callback):
    """The weights each rank trained to, before rank 0 restores its best epoch and shares it."""

    def on_fit_end(self, trainer):
        trained.update({k: v.tolist() for k, v in trainer.model.state_dict().items()})
        trained.update({f"extra.{i}": p.detach().tolist() for i, p in enumerate(trainer.extra_params)})


trained = {}


def recording_fit(self, batches, validate=None, resume_from=None):
    self.callbacks.append(Recorder())
    inner = batches.epoch

    def epoch(e):  # record which users each rank trained on
        for b in inner(e):
            seen.append(b["uid"].tolist())
            yield b

    batches.epoch = epoch
    try:
        return fit(self, batches, validate, resume_from)
    finally:
        state = {k: v.tolist() for k, v in self.model.state_dict().items()}
        state.update({f"extra.{i}": p.detach().tolist() for i, p in enumerate(self.extra_params)})
        keys = sorted({k for h in self.history for k in h})
        json.dump({"state": state, "trained": trained, "keys": keys, "seen": seen, "epochs": self.epoch,
                   "callbacks": [type(c).__name__ for c in self.callbacks]}, open(f"{out}/rank{rank}.json", "w"))

Trainer.fit = recording_fit
res = llmkt.train(sys.argv[1])
print(f"rank {rank} result {'none' if res is None else res.run_dir}")
'''


CASES = {
    # SASRec with a learned projection head outside the model (all-reduced by hand) and early stopping on rank 0
    "sasrec-transfer": ({"name": "sasrec", "max_len": 10, "hidden": 16, "n_blocks": 1, "n_heads": 1},
                        {"epochs": 8, "patience": 1, "eval_every": 1},
                        {"alignment": "projection", "reducer": {"method": "none"}, "compare_base": False,
                         "alpha": 0.5}),
    # LightGCN: a sparse adjacency buffer (kept out of DDP's buffer broadcast), no transfer
    "lightgcn": ({"name": "lightgcn", "dim": 8, "n_layers": 2}, {"epochs": 2, "eval_every": 2}, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_gloo_processes_train_one_model(tmp_path, case):
    model, training, transfer = CASES[case]
    data = write_csv_data(tmp_path / "data")
    cfg = {"data": {"name": "csv", "path": str(data)}, "model": model,
           "training": {"batch_size": 4, "progress": False, "device": "cpu", "num_threads": 1, **training},
           "output": {"dir": str(tmp_path / "runs")}}  # no name: rank 0's timestamped name must be shared
    if transfer is not None:
        users, vecs = user_vectors(data, 24)
        from llmkt.data.vectors import ProfileVectors

        cfg["transfer"] = {"vectors": {"path": str(ProfileVectors(users, vecs, {}).save(tmp_path / "v.npz"))},
                           **transfer}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "script.py").write_text(SCRIPT)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(tmp_path / "script.py"), str(tmp_path / "run.yaml"), str(tmp_path)],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    # the same weights on both ranks at the end of training (gradients all-reduced; the transfer head outside the
    # model included), and after it (rank 0's best epoch, shared)
    for what in ("trained", "state"):
        assert r0[what].keys() == r1[what].keys() and len(r0[what]) > 0
        assert all(np.array_equal(r0[what][k], r1[what][k]) for k in r0[what]), what
    # one run folder, written by rank 0
    folders = list((tmp_path / "runs").iterdir())
    assert len(folders) == 1, folders
    names = {f.name for f in folders[0].iterdir()}
    assert {"config.yaml", "metrics.csv", "best.pt", "last.pt", "results.json"} <= names
    assert "trained by 2 processes (DDP, gloo)" in (folders[0] / "config.yaml").read_text()
    assert f"rank 0 result {folders[0]}" in p.stdout and "rank 1 result none" in p.stdout
    # both ranks left the loop at the epoch rank 0 decided
    logged = (folders[0] / "metrics.csv").read_text().strip().splitlines()[1:]
    assert r0["epochs"] == r1["epochs"] == len(logged)
    assert "CSVLogger" in r0["callbacks"] and "CSVLogger" not in r1["callbacks"]
    # disjoint shards of the same epochs
    flat0 = [tuple(b) for b in r0["seen"]]
    flat1 = [tuple(b) for b in r1["seen"]]
    assert len(flat0) == len(flat1) > 0 and not set(flat0) & set(flat1)
    if transfer is not None:
        assert any(k.startswith("extra.") for k in r0["state"])  # a head outside the model was trained
        assert "kt/L_kt" in r0["keys"] and "kt/L_kt" in r1["keys"]  # the transfer loss ran on both ranks
        assert r0["epochs"] < training["epochs"]  # early stopping (patience 1) ended the run on both ranks


class _Source:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def epoch(self, epoch):
        for i in range(self.n):
            yield {"i": torch.tensor([epoch * 100 + i])}


def test_shards_are_disjoint_and_equal_in_length():
    shards = [ShardedBatches(_Source(7), r, 3) for r in range(3)]
    got = [[int(b["i"]) for b in s.epoch(1)] for s in shards]
    assert got == [[100, 103], [101, 104], [102, 105]] and [len(s) for s in shards] == [2, 2, 2]
    with pytest.raises(Exception, match="fewer than the 3 processes"):
        ShardedBatches(_Source(2), 0, 3)
