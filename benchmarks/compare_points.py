"""Two or more points of one study at the same setting, on test: paired per-user tests, Holm-adjusted.

``llmkt study report`` compares each variant's point *chosen on validation* with the base and with its shuffled
control's chosen point; when a control's validation chose the base, that comparison is against the base. The
report's "Against the controls at the same point" table now answers, for the chosen point, the other question a
reader asks (does the shuffled or random control test lower at that very setting?); this script asks it for any
points, chosen or not (e.g. a variant's runner-up setting, or with the base in the same Holm family). It is a
post-hoc look at test (nothing is chosen here), so it goes beside the report, not instead of it. Points are ``VARIANT:POINT`` as the report's "Validation by point" table
writes them (``none:-`` for the base); the first is the reference. Test metrics of runs not yet evaluated on test
are computed and stored in their run folders like ``study report`` does. From the repository root:

    python benchmarks/compare_points.py benchmarks/studies/amazon_book_lightgcn.yaml \
        llm_user:transfer.point=rmse_a0.5 llm_user_shuffled:transfer.point=rmse_a0.5 \
        random_user:transfer.point=rmse_a0.5 none:- --out benchmarks/results/amazon_book_lightgcn_same_point_rmse.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from llmkt.config import validate_config
from llmkt.errors import LLMKTError
from llmkt.evaluation.studies import holm, paired
from llmkt.experiments.study import evaluate_chosen, open_study, point_test, trials_table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="the study file")
    ap.add_argument("points", nargs="+", help="VARIANT:POINT, the first the reference (e.g. llm_user:-)")
    ap.add_argument("--group", default=None, help="the model group (needed when the study has several)")
    ap.add_argument("--metric", default=None, help="test metric (default: the study's metric)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if len(a.points) < 2:
        print("error: give at least two points (the first is the reference).", file=sys.stderr)
        return 2
    try:
        h = open_study(a.spec, create=False)
        trials = trials_table(h)
        if trials.empty:
            raise LLMKTError(f"study {h.config.name!r} has no finished trials")
        groups = sorted(trials["group"].unique())
        group = a.group or (groups[0] if len(groups) == 1 else None)
        if group not in groups:
            raise LLMKTError(f"choose a model group with --group; the study has {groups}")
        metric = a.metric or h.config.metric or validate_config(h.base_raw).training.monitor
        cells: dict[tuple[str, str], list[str]] = {}
        for spec in a.points:
            variant, sep, point = spec.partition(":")
            rows = trials[(trials["group"] == group) & (trials["variant"] == variant) & (trials["point"] == point)]
            if not sep or len(rows) != len(h.config.seeds):
                there = sorted(f"{v}:{p}" for v, p in
                               trials[trials["group"] == group][["variant", "point"]].drop_duplicates().values)
                raise LLMKTError(f"point {spec!r}: {len(rows)} finished cells of {len(h.config.seeds)} seeds in "
                                 f"group {group!r}; points there: {there}")
            cells[(group, spec)] = rows.sort_values("seed")["cell"].tolist()
        evaluate_chosen(h, trials, cells)
    except LLMKTError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run_dirs = trials.set_index("cell")["run_dir"]
    per_user, means = {}, {}
    for (_, spec), ids in cells.items():
        per_user[spec], means[spec] = point_test([run_dirs[cid] for cid in ids], metric)
    ref, others = a.points[0], a.points[1:]
    rows = []
    for other in others:
        p_t, p_w, n = paired(per_user[other], per_user[ref])
        rows.append({"reference": ref, "other": other, "reference_test": float(np.mean(means[ref])),
                     "other_test": float(np.mean(means[other])), "other_std": float(np.std(means[other])),
                     "uplift_%": 100 * (np.mean(means[ref]) / np.mean(means[other]) - 1),
                     "p_t": p_t, "p_w": p_w, "users": n})
    for key in ("p_t", "p_w"):
        for row, adj in zip(rows, holm([r[key] for r in rows])):
            row[f"{key}_holm"] = adj
    out = {"study": h.config.name, "group": group, "metric": metric, "seeds": h.config.seeds,
           "reference": {"point": ref, "test": float(np.mean(means[ref])), "std": float(np.std(means[ref]))},
           "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1))
    print(f"reference {ref}: test {metric} {np.mean(means[ref]):.4f} ± {np.std(means[ref]):.4f}")
    print(f"| against | test {metric} | std | reference's uplift % | p_t_holm | p_w_holm |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['other']} | {r['other_test']:.4f} | {r['other_std']:.4f} | {r['uplift_%']:.2f} | "
              f"{r['p_t_holm']:.3g} | {r['p_w_holm']:.3g} |")
    print(f"summary: {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
