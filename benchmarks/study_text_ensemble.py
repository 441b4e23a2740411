"""The text-only ranker and the score-sum ensemble (model + text, weight chosen on validation) for every seed of a
study's chosen point: the baselines "a user would try first" beside the study's table (issue 16, point 4).

Reads the study's ``selection.json`` (written by ``llmkt study report``), runs
:func:`llmkt.experiments.baselines.text_baselines` on each chosen run folder of ``--variant`` (default the base
``none``), and writes one JSON with the per-seed figures and their mean and population std. From the repository root:

    python benchmarks/study_text_ensemble.py studies/amazon_book_v2 \
        --users configs/profiles_amazon_book_import.yaml --items configs/profiles_amazon_book_items_import.yaml \
        --out benchmarks/results/text_ensemble_amazon_book_v2.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from llmkt.errors import DataError
from llmkt.experiments.baselines import text_baselines
from llmkt.experiments.study import cell_run_dir, read_selection

METRICS = ("NDCG@20", "Recall@20", "NDCG@10", "Recall@10")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("study_dir", type=Path, help="a study folder with selection.json (after `llmkt study report`)")
    ap.add_argument("--users", required=True, help="user vectors: a vectors file or a profile-job YAML")
    ap.add_argument("--items", required=True, help="item vectors: a vectors file or an item profile-job YAML")
    ap.add_argument("--variant", default="none", help="whose chosen runs (default: none, the base model)")
    ap.add_argument("--group", default=None, help="the model group (default: every group)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    sel_path = a.study_dir / "selection.json"
    try:
        sel = read_selection(a.study_dir)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    choices = [c for c in sel["choices"] if c["variant"] == a.variant and a.group in (None, c["group"])]
    if not choices:
        known = sorted({(c["group"], c["variant"]) for c in sel["choices"]})
        print(f"error: no chosen point for variant {a.variant!r} (group {a.group}) in {sel_path}; there: {known}",
              file=sys.stderr)
        return 2
    out: dict = {"study": sel["study"], "variant": a.variant, "users": a.users, "items": a.items, "groups": {}}
    for c in choices:
        rows = []
        for cell in c["cells"]:
            run_dir = cell_run_dir(a.study_dir, cell)
            t0 = time.perf_counter()
            r = text_baselines(a.users, a.items, run_dir=run_dir)
            s = r.summary()
            rows.append({"run_dir": str(run_dir), "weight": s["ensemble_weight"], "seconds": time.perf_counter() - t0,
                         "text": {m: s["text"]["test"][m] for m in METRICS},
                         "model": {m: s["model"]["test"][m] for m in METRICS},
                         "ensemble": {m: s["ensemble_test"][m] for m in METRICS}})
            print(f"{c['group']} {run_dir.name}: weight {s['ensemble_weight']}, test {r.metric} model "
                  f"{s['model']['test'][r.metric]:.4f} ensemble {s['ensemble_test'][r.metric]:.4f}", flush=True)
        agg = {k: {m: {"mean": float(np.mean([row[k][m] for row in rows])),
                       "std": float(np.std([row[k][m] for row in rows]))} for m in METRICS}
               for k in ("text", "model", "ensemble")}
        out["groups"][c["group"]] = {"point": c["point"], "seeds": c["seeds"], "runs": rows, "test": agg}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(f"summary: {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
