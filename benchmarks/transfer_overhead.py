"""Overhead of knowledge transfer: median seconds per training epoch with vs without, side by side in one run.

Alternates base and transfer runs (each ``--epochs`` long) ``--rounds`` times, so machine drift hits both
equally; the transfer runs use random profile vectors reduced by PCA to the layer width (the cost does not depend
on the vectors' content). Also times scoring all users with both trained models.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/transfer_overhead.py --data-dir ../shared/data \
        --dataset ml-1m-half --epochs 3 --rounds 2 --out benchmarks/results/transfer_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

import llmkt  # noqa: E402
from llmkt.experiments.inputs import load_dataset  # noqa: E402
from llmkt.experiments.runner import evaluate_model, protocol_of  # noqa: E402
from llmkt.data.vectors import ProfileVectors  # noqa: E402


def step_benchmark(res, ds, vec: Path, repeats: int = 15) -> dict[str, list[float]]:
    """Seconds per optimisation step on one fixed batch, base and transfer interleaved (same model, same batch)."""
    import torch

    from llmkt.config import validate_config
    from llmkt.experiments.runner import make_batches
    from llmkt.training.trainer import Trainer
    from llmkt.experiments.transfer import setup_transfer

    raw = res.config.model_dump(mode="json")
    raw["transfer"] = {"vectors": {"path": str(vec)}, "reducer": {"method": "pca"}, "compare_base": False,
                       "schedule": [{"step": "transfer", "fraction": 1.0}]}
    cfg = validate_config(raw)
    model = res.model.train()
    batch = next(iter(make_batches(model, res.split, cfg).epoch(0)))
    setup = setup_transfer(cfg, model, res.split, batch, torch.device("cpu"), None)
    kt = setup.kt
    trainer = Trainer(model, epochs=1, callbacks=[kt], progress=False)
    times: dict[str, list[float]] = {"base": [], "transfer": []}
    for _ in range(repeats):
        for name in ("base", "transfer"):
            kt.set_active(name == "transfer")
            t0 = time.perf_counter()
            loss = model.loss(batch)
            loss = kt.on_loss(trainer, batch, loss)
            trainer.optimizer.zero_grad()
            loss.backward()
            trainer.optimizer.step()
            times[name].append(time.perf_counter() - t0)
    kt.detach()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dataset", default="ml-1m-half")
    ap.add_argument("--config", default="configs/sasrec_ml1m_half.yaml")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--step-repeats", type=int, default=0,
                    help="also time single training steps, base and transfer interleaved, this many times each")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    common = [f"data.data_dir={args.data_dir}", f"data.name={args.dataset}", f"training.epochs={args.epochs}",
              "training.progress=false", "output.save_checkpoints=false", "output.dir=/tmp/llmkt-overhead",
              "training.eval_every=1000"]
    cfg = llmkt.load_config(args.config, common)
    ds = load_dataset(cfg)
    vec = Path(tempfile.mkdtemp()) / "random.npz"
    ProfileVectors(ds.user_map.external_ids, np.random.default_rng(0).normal(size=(ds.n_users, 384)),
                   {"source": "random"}).save(vec)
    kt = [f"transfer={{vectors: {{path: {vec}}}, reducer: {{method: pca}}, compare_base: false, "
          f"schedule: [{{step: transfer, fraction: 1.0}}]}}"]
    epochs: dict[str, list[float]] = {"base": [], "transfer": []}
    cpu: dict[str, list[float]] = {"base": [], "transfer": []}
    scoring: dict[str, list[float]] = {"base": [], "transfer": []}
    for _ in range(args.rounds):
        for name, extra in (("base", []), ("transfer", kt)):
            res = llmkt.train(args.config, common + extra, data=ds)
            epochs[name] += [h["epoch_seconds"] for h in res.history]
            cpu[name] += [h["epoch_cpu_seconds"] for h in res.history]
            assert (name == "transfer") == ("kt/active" in res.history[0])
            t0 = time.perf_counter()
            evaluate_model(res.model, res.split, "test", protocol_of(res.config), None, 512)
            scoring[name].append(time.perf_counter() - t0)
    step_times = step_benchmark(res, ds, vec, args.step_repeats) if args.step_repeats else {}
    med = {k: statistics.median(v) for k, v in epochs.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    out = {"dataset": args.dataset, "config": args.config, "epoch_seconds": epochs, "median_epoch_s": med,
           "ratio": med["transfer"] / med["base"], "epoch_cpu_seconds": cpu, "median_epoch_cpu_s": med_cpu,
           "cpu_ratio": med_cpu["transfer"] / med_cpu["base"], "score_all_users_s": scoring,
           "median_score_s": {k: statistics.median(v) for k, v in scoring.items()}, "step_seconds": step_times,
           "step_ratio": (statistics.median(step_times["transfer"]) / statistics.median(step_times["base"])
                          if step_times else None)}
    print(json.dumps({k: out[k] for k in ("median_epoch_s", "ratio", "median_epoch_cpu_s", "cpu_ratio",
                                          "median_score_s", "step_ratio")}, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
