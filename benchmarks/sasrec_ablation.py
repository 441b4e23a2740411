"""SASRec design ablation on ml-1m-half (leave-one-out, full ranking, 20 epochs, README hyperparameters).

Variants differ only in choices the benchmark's hyperparameters leave open: block layout (pre-norm vs the
SASRec reference code's), the training window (last vs random), Adam's beta2. Meant for a GPU machine (fast);
the chosen default is then measured on the CPU by sequential_ml1m.py.

    python benchmarks/sasrec_ablation.py --data-dir DATA --seeds 1 2 3 --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import llmkt

VARIANTS = {
    "prenorm-last": ["model.norm_first=true"],
    "refblock-last": ["model.norm_first=false"],
    "prenorm-random": ["model.norm_first=true", "training.window=random"],
    "refblock-random": ["model.norm_first=false", "training.window=random"],
    "prenorm-last-b098": ["model.norm_first=true", "training.adam_betas=[0.9, 0.98]"],
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for name in args.variants:
        for seed in args.seeds:
            t0 = time.perf_counter()
            res = llmkt.train("configs/sasrec_ml1m_half.yaml",
                              [f"data.data_dir={args.data_dir}", f"training.seed={seed}", "training.progress=false",
                               f"training.device={args.device}", "training.num_threads=null",
                               "output.dir=/tmp/llmkt-ablation", "output.save_checkpoints=false", *VARIANTS[name]])
            rows.append({"variant": name, "seed": seed, "test_NDCG@10": res.test["NDCG@10"],
                         "test_HR@10": res.test["HR@10"], "valid_NDCG@10": res.valid["NDCG@10"],
                         "best_epoch": res.best_epoch, "seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for name in args.variants:
        r = [x for x in rows if x["variant"] == name]
        summary[name] = {k: (statistics.mean(x[k] for x in r), statistics.pstdev(x[k] for x in r))
                         for k in ("valid_NDCG@10", "test_NDCG@10", "test_HR@10")}
        print(name, {k: f"{m:.4f} ± {s:.4f}" for k, (m, s) in summary[name].items()})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"rows": rows, "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
