"""Base rows of cf_ctr_results.py's models on the CPU, for device-matched deltas of rows that ran on the CPU.

The base rows in benchmarks/results/cf_ctr_gpu/ ran on a GPU; some models (MultVAE) follow a different training
trajectory on the CPU with the same seed, which shifts every paired delta of a CPU row by the device difference.
This script trains the same base configurations on the CPU and writes them beside the results (it does not touch
the tables' files).

    python benchmarks/cpu_base.py --data-dir ../shared/data --models multvae --seeds 2 3 \\
        --out benchmarks/results/cpu_check/base_cpu_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import llmkt

from cf_ctr_results import CF, CTR, base_config  # same folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", nargs="+", default=["multvae"], choices=[*CF, *CTR])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    out = Path(args.out)
    state = json.loads(out.read_text()) if out.exists() else {"dataset": args.dataset, "rows": []}
    done = {(r["model"], r["seed"]) for r in state["rows"]}
    for seed in args.seeds:
        for model in args.models:
            if (model, seed) in done:
                continue
            cfg = base_config(args.dataset, args.data_dir, model, seed, "cpu", f"runs/cpu_base/{model}_{seed}")
            t0 = time.perf_counter()
            res = llmkt.train(cfg)
            row = {"model": model, "variant": "base", "alpha": None, "seed": seed, "valid": res.valid.metrics,
                   "test": res.test.metrics, "seconds": time.perf_counter() - t0, "best_epoch": res.best_epoch,
                   "device": "cpu"}
            state["rows"].append(row)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(state, indent=1, default=str))
            print(json.dumps({k: v for k, v in row.items() if k != "valid"}), flush=True)


if __name__ == "__main__":
    main()
