"""Genre-count vectors of a split, for the diagnostics beside real profile vectors (never a result):

* ``history``: each user's normalised genre histogram of their *training* items (the no-LLM reference that
  docs/results.md reads the LLM vectors against);
* ``leak``: the same of their held-out validation + test items. LEAK BY DESIGN: a check that the transfer path
  carries information at all (docs/transfer.md), never a result.

    python benchmarks/genre_vectors.py --data ml-100k --split ratio -o runs/vectors
    # -> runs/vectors/ml-100k-ratio-history.npz, runs/vectors/ml-100k-ratio-leak.npz (a study's `path:` variant)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import llmkt
from llmkt.data import columns as C
from llmkt.data.features import genre_histograms
from llmkt.data.vectors import ProfileVectors
from llmkt.experiments.inputs import load_dataset, split_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="ml-100k")
    ap.add_argument("--split", default="ratio", choices=["ratio", "leave_one_out"])
    ap.add_argument("-o", "--out", default="runs/vectors")
    args = ap.parse_args()
    cfg = llmkt.load_config(None, [f"data.name={args.data}", f"split.kind={args.split}"])
    ds = load_dataset(cfg)
    split = split_dataset(cfg, ds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = {"history": (split.train, "genre histogram of training items"),
             "leak": (pd.concat([split.valid, split.test]), "LEAK-BY-DESIGN genre histogram of validation + test items")}
    for name, (frame, source) in parts.items():
        users = np.unique(frame[C.UID].to_numpy())
        pv = ProfileVectors(ds.user_map.to_external(users), genre_histograms(ds, frame)[users],
                            {"dataset": ds.name, "split": args.split, "source": source})
        path = pv.save(out / f"{args.data}-{args.split}-{name}.npz")
        print(f"{name}: {len(users)} users x {pv.vectors.shape[1]} genres -> {path}")


if __name__ == "__main__":
    main()
