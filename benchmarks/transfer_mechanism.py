"""Mechanism check: does the transfer path carry information? (leak-by-design diagnostic, never a result)

On ml-100k with SASRec (leave-one-out, full ranking), three kinds of profile vectors per user:

* ``leak``: the genre histogram of the user's held-out validation + test items. The model cannot see these
  items in training, so a gain over the base model proves the auxiliary loss moves information into the model.
  THIS VECTOR LEAKS THE TARGETS BY DESIGN; it is a diagnostic of the mechanism, not a result.
* ``history``: the genre histogram of the user's training items (no leak; a no-LLM control).
* ``random``: Gaussian vectors of the same shape (a control: transfer of noise must not help).
* ``leak_items`` / ``random64``: sum of fixed random 64-d codes of the held-out items / Gaussian control.
* ``leak_emb`` / ``emb_random``: the trained base model's own embedding of the user's test item (a target in the
  space the scorer uses) / of a random item; built per seed from that seed's base run (LEAK BY DESIGN).

For each kind, alpha is chosen on validation NDCG@10 (mean over seeds), then test NDCG@10 is reported as
mean ± std over seeds next to the base model.

    python benchmarks/transfer_mechanism.py --data-dir ../shared/data --seeds 1 2 3 --out results.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import llmkt
from llmkt.data import columns as C
from llmkt.data import features
from llmkt.experiments.inputs import load_dataset, split_dataset
from llmkt.data.vectors import ProfileVectors


def genre_histograms(split, frame) -> tuple[np.ndarray, np.ndarray]:
    """External ids of the users in ``frame`` and their rows of the library's genre histogram."""
    users = np.unique(frame[C.UID].to_numpy())
    return split.dataset.user_map.to_external(users), features.genre_histograms(split.dataset, frame)[users]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.5, 0.9])
    ap.add_argument("--kinds", nargs="+", default=["leak", "history", "random"])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--layer", default="blocks.1")
    ap.add_argument("--pooling", default="mean")
    ap.add_argument("--alignment", default="slice", help="slice for the 19-d kinds; fixed for leak_items/random64")
    ap.add_argument("--transfer-fraction", type=float, default=0.5)
    ap.add_argument("--dynamic-beta", action="store_true")
    ap.add_argument("--loss", default="rmse")
    ap.add_argument("--model", default="sasrec", help="sasrec or multvae (then use --layer mu)")
    ap.add_argument("--extra", nargs="*", default=[], help="more --set style overrides for every run")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    base_over = [f"data.data_dir={args.data_dir}", "data.name=ml-100k", f"training.epochs={args.epochs}",
                 "training.progress=false", f"training.device={args.device}", "training.num_threads=null",
                 "output.save_checkpoints=false", "output.dir=/tmp/llmkt-mechanism",
                 *([f"model={{name: {args.model}}}"] if args.model != "sasrec" else []), *args.extra]
    cfg0 = llmkt.load_config("configs/sasrec_ml100k.yaml", base_over)
    ds = load_dataset(cfg0)
    split = split_dataset(cfg0, ds)
    tmp = Path(tempfile.mkdtemp())
    ids, leak = genre_histograms(split, pd.concat([split.valid, split.test]))  # held-out items: the leak
    hids, hist = genre_histograms(split, split.train)
    rng = np.random.default_rng(0)
    # leak_items: a fixed random code per item (64-d), summed over each user's held-out items (identity leak)
    codes = rng.normal(size=(ds.n_items + 1, 64)).astype(np.float32) / 8.0
    held = pd.concat([split.valid, split.test])
    item_leak = np.zeros((ds.n_users + 1, 64), dtype=np.float32)
    np.add.at(item_leak, held[C.UID].to_numpy(), codes[held[C.IID].to_numpy()])
    held_users = np.unique(held[C.UID].to_numpy())
    vectors = {"leak": ProfileVectors(ids, leak, {"source": "LEAK-BY-DESIGN genre histogram of valid+test"}),
               "history": ProfileVectors(hids, hist, {"source": "genre histogram of training items"}),
               # the library's one random control (per-dimension mean and std of the leak vectors)
               "random": ProfileVectors(ids, leak, {}).control("random", 0),
               "leak_items": ProfileVectors(ds.user_map.to_external(held_users), item_leak[held_users],
                                            {"source": "LEAK-BY-DESIGN random codes of held-out items"}),
               "random64": ProfileVectors(ds.user_map.to_external(held_users), item_leak[held_users],
                                          {}).control("random", 0)}
    paths = {k: v.save(tmp / f"{k}.npz") for k, v in vectors.items()}  # + leak_emb/emb_random per seed

    rows = []

    def embedding_leak(res, seed: int) -> None:
        """leak_emb: the base model's embedding of each user's test item (mean over them when a split holds several
        per user); emb_random: of a random item."""
        emb = res.model.item_emb.weight.detach().cpu().numpy()  # (n_items + 1, D)
        test = split.test
        uid = test[C.UID].to_numpy()
        internal = pd.unique(uid)  # order of first appearance: the leave-one-out order of the recorded runs
        target = np.zeros((ds.n_users + 1, emb.shape[1]), dtype=np.float64)
        np.add.at(target, uid, emb[test[C.IID].to_numpy()])
        target = (target[internal] / np.bincount(uid)[internal][:, None]).astype(np.float32)
        users = ds.user_map.to_external(internal)
        r = np.random.default_rng(seed)
        paths["leak_emb"] = ProfileVectors(users, target,
                                           {"source": "LEAK-BY-DESIGN base model embedding of the test item(s)"}
                                           ).save(tmp / f"leak_emb_{seed}.npz")
        paths["emb_random"] = ProfileVectors(users, emb[r.integers(1, ds.n_items + 1, len(users))],
                                             {"source": "base model embedding of a random item"}
                                             ).save(tmp / f"emb_random_{seed}.npz")

    def run(kind: str, alpha: float | None, seed: int) -> None:
        over = [*base_over, f"training.seed={seed}"]
        if kind != "base":
            tf = args.transfer_fraction
            steps = f"{{step: transfer, fraction: {tf}}}" + (f", {{step: finetune, fraction: {1 - tf}}}" if tf < 1 else "")
            over += [f"transfer={{vectors: {{path: {paths[kind]}}}, reducer: {{method: none}}, layer: {args.layer}, "
                     f"pooling: {args.pooling}, alignment: {args.alignment}, alpha: {alpha}, compare_base: false, "
                     f"dynamic_beta: {str(args.dynamic_beta).lower()}, loss: {args.loss}, "
                     f"schedule: [{steps}]}}"]
        t0 = time.perf_counter()
        res = llmkt.train("configs/sasrec_ml100k.yaml", over, data=ds)
        if kind == "base" and hasattr(res.model, "item_emb"):
            embedding_leak(res, seed)
        rows.append({"kind": kind, "alpha": alpha, "seed": seed, "valid_NDCG@10": res.valid["NDCG@10"],
                     "test_NDCG@10": res.test["NDCG@10"], "test_HR@10": res.test["HR@10"],
                     "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)

    for seed in args.seeds:
        run("base", None, seed)
        for kind in args.kinds:
            for alpha in args.alphas:
                run(kind, alpha, seed)

    def agg(sel, key):
        v = [r[key] for r in sel]
        return statistics.mean(v), statistics.pstdev(v)

    summary = {"base": {k: agg([r for r in rows if r["kind"] == "base"], k)
                        for k in ("valid_NDCG@10", "test_NDCG@10", "test_HR@10")}}
    for kind in args.kinds:
        best = max(args.alphas, key=lambda a: agg([r for r in rows if r["kind"] == kind and r["alpha"] == a],
                                                  "valid_NDCG@10")[0])
        sel = [r for r in rows if r["kind"] == kind and r["alpha"] == best]
        summary[kind] = {"alpha": best, **{k: agg(sel, k) for k in ("valid_NDCG@10", "test_NDCG@10", "test_HR@10")}}
    summary["settings"] = {"model": args.model, "layer": args.layer, "pooling": args.pooling, "alignment": args.alignment,
                           "dynamic_beta": args.dynamic_beta, "loss": args.loss,
                           "transfer_fraction": args.transfer_fraction, "epochs": args.epochs}
    for k, v in summary.items():
        print(k, {a: (f"{b[0]:.4f} ± {b[1]:.4f}" if isinstance(b, tuple) else b) for a, b in v.items()}, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
