"""Markdown tables from cf_ctr_results.py outputs: per dataset and model, base and every variant (alpha chosen
on mean validation metric over seeds), test metrics as mean ± population std (ddof 0) over seeds, and the
per-seed paired difference to the base model (mean ± population std).

    python benchmarks/report_results.py benchmarks/results/cf_ctr_ml-100k*.json [...]   # shard files merge
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict


def ms(values: list[float]) -> str:
    if not values:
        return "–"
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {sd:.4f}"


def table(rows: list[dict], dataset: str) -> str:
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_model[r["model"]].append(r)
    out = [f"### {dataset}", ""]
    # the results script's order (general CF, then click prediction), whatever order the files came in
    order = ["neumf", "simplex", "multvae", "deepfm", "dcn"]
    for model, rs in sorted(by_model.items(), key=lambda kv: (order.index(kv[0]) if kv[0] in order else len(order),
                                                              kv[0])):
        ctr = "AUC" in rs[0]["test"]
        metrics = ["AUC", "LogLoss"] if ctr else ["NDCG@10", "Recall@10", "HR@10"]
        sel = metrics[0]
        base = {r["seed"]: r for r in rs if r["variant"] == "base"}
        out += [f"**{model}** (alpha chosen on validation {sel})", "",
                "| variant | alpha | " + " | ".join(f"test {m}" for m in metrics) + f" | Δ{sel} vs base (paired by seed) | seeds |",
                "|---|---|" + "---|" * len(metrics) + "---|---|"]
        variants = sorted({r["variant"] for r in rs}, key=lambda v: (v != "base", v))
        for v in variants:
            vr = [r for r in rs if r["variant"] == v]
            alphas = sorted({r["alpha"] for r in vr}, key=lambda a: (a is None, a))
            best = max(alphas, key=lambda a: statistics.mean(r["valid"][sel] for r in vr if r["alpha"] == a))
            chosen = [r for r in vr if r["alpha"] == best]
            diffs = [r["test"][sel] - base[r["seed"]]["test"][sel] for r in chosen if r["seed"] in base]
            label = v + (" (LEAK BY DESIGN)" if "leak" in v else "")
            out.append(f"| {label} | {best if best is not None else '–'} | "
                       + " | ".join(ms([r["test"][m] for r in chosen]) for m in metrics)
                       + f" | {ms(diffs) if v != 'base' else '–'} | {len(chosen)} |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    merged: dict[str, dict] = {}  # dataset -> rows and vectors of all its files (shards included)
    for path in sys.argv[1:]:
        state = json.load(open(path))
        # cf_ctr_<dataset>[.<part>].json: shard files (.shard3) and other parts (.cpu) merge into one dataset
        dataset = path.rsplit("cf_ctr_", 1)[-1].removesuffix(".json").split(".")[0]
        m = merged.setdefault(dataset, {"rows": {}, "vectors": {}, "references": {}})
        for r in state["rows"]:  # one row per (model, variant, alpha, seed); a later file wins
            m["rows"][(r["model"], r["variant"], r["alpha"], r["seed"])] = r
        m["vectors"].update(state.get("vectors", {}))
        m["references"].update(state.get("references", {}))
    for dataset, m in merged.items():
        print(table(list(m["rows"].values()), dataset))
        for name, metrics in m["references"].items():
            print(f"Reference (no learning), {name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + "  ")
        print("Vectors: " + "; ".join(f"{k}: {v}" for k, v in m["vectors"].items()) + "\n")


if __name__ == "__main__":
    main()
