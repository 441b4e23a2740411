"""Every chosen point of a study against a base model tuned in another study (chosen there on validation): paired
per-user tests on the seed-averaged test metric, Holm-adjusted across the study's rows.

For a search that drew the base's hyperparameters poorly (amazon_book_v2: its base's reg was drawn far from the
best one), a base-only grid study (amazon_book_base_reg) gives the tuned base; this script puts the first study's
rows against it, with the same test and correction as ``llmkt study report``. Both studies must have been
reported (``selection.json``) and share the data split and seeds. From the repository root:

    python benchmarks/compare_to_tuned_base.py studies/amazon_book_v2 --base studies/amazon_book_base_reg \
        --out benchmarks/results/amazon_book_v2_vs_tuned_base.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from llmkt.errors import DataError
from llmkt.evaluation.studies import holm, paired
from llmkt.experiments.study import cell_run_dir, point_test, read_selection


def _per_user(study_dir: Path, cells: list[str], metric: str) -> tuple[pd.Series, list[float]]:
    return point_test([cell_run_dir(study_dir, cell) for cell in cells], metric)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study_dir", type=Path)
    ap.add_argument("--base", type=Path, required=True, help="a base-only study folder; its best point on "
                                                             "validation is the tuned base")
    ap.add_argument("--metric", default="NDCG@20", help="the studies' metric (default NDCG@20)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    try:
        sels = {d: read_selection(d) for d in (a.study_dir, a.base)}
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base_choices = [c for c in sels[a.base]["choices"] if c["variant"] == "none"]
    if not base_choices:
        print(f"error: {a.base}/selection.json has no base (variant none) rows.", file=sys.stderr)
        return 2
    tuned = max(base_choices, key=lambda c: c["valid_mean"])
    metric = a.metric
    base_pu, base_means = _per_user(a.base, tuned["cells"], metric)
    rows = []
    for c in sels[a.study_dir]["choices"]:
        pu, means = _per_user(a.study_dir, c["cells"], metric)
        p_t, p_w, n = paired(pu, base_pu)
        rows.append({"group": c["group"], "variant": c["variant"], "point": c["point"], "valid": c["valid_mean"],
                     "test": float(np.mean(means)), "std": float(np.std(means)),
                     "uplift_%": 100 * (np.mean(means) / np.mean(base_means) - 1), "p_t": p_t, "p_w": p_w,
                     "users": n})
    for key in ("p_t", "p_w"):
        for row, adj in zip(rows, holm([r[key] for r in rows])):
            row[f"{key}_holm"] = adj
    out = {"study": sels[a.study_dir]["study"], "metric": metric,
           "tuned_base": {"study": sels[a.base]["study"], "group": tuned["group"], "valid": tuned["valid_mean"],
                          "test": float(np.mean(base_means)), "std": float(np.std(base_means))},
           "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(f"tuned base: {sels[a.base]['study']} {tuned['group']} valid {tuned['valid_mean']:.4f} test {metric} "
          f"{np.mean(base_means):.4f} ± {np.std(base_means):.4f}")
    print(f"| variant | point | valid | test {metric} | std | uplift_% vs tuned base | p_t_holm | p_w_holm |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['point']} | {r['valid']:.4f} | {r['test']:.4f} | {r['std']:.4f} | "
              f"{r['uplift_%']:.2f} | {r['p_t_holm']:.3g} | {r['p_w_holm']:.3g} |")
    print(f"written: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
