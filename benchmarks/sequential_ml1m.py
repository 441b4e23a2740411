"""llmkt SASRec / BERT4Rec on ml-1m-half: leave-one-out, full ranking (the benchmark of docs/benchmarks.md).

    OMP_WAIT_POLICY=PASSIVE python benchmarks/sequential_ml1m.py --config configs/sasrec_ml1m_half.yaml \
        --out benchmarks/results/llmkt_sasrec_ml1m_half.json [--set training.epochs=20]

Records NDCG@10, HR@10, per-epoch seconds (training only, validation excluded), the time to score all users
(forward pass + top-k + seen-item masking) and the peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

import llmkt  # noqa: E402
from llmkt.experiments.runner import evaluate_model, protocol_of  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    overrides = ["training.progress=false", "output.dir=/tmp/llmkt-bench-runs", *args.overrides]
    res = llmkt.train(args.config, overrides)
    cfg = res.config
    epoch_s = [h["epoch_seconds"] for h in res.history]
    t0 = time.perf_counter()
    test = evaluate_model(res.model, res.split, "test", protocol_of(cfg), cfg.model.max_len, 512)
    score_s = time.perf_counter() - t0
    out = {"library": f"llmkt {llmkt.__version__} {cfg.model.name}", "dataset": cfg.data.name,
           "split": res.split.kind, "protocol": test.protocol, "epochs": len(epoch_s),
           "best_epoch": res.best_epoch, "threads": torch.get_num_threads(),
           "NDCG@10": test["NDCG@10"], "HR@10": test["HR@10"], "NDCG@20": test["NDCG@20"],
           "valid_NDCG@10": res.valid["NDCG@10"],
           "epoch_seconds": epoch_s, "median_epoch_s": statistics.median(epoch_s),
           "train_s": res.timings["train_s"], "score_all_users_s": score_s,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "config": cfg.model_dump(mode="json")}
    print(json.dumps({k: v for k, v in out.items() if k not in ("config", "epoch_seconds")}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
