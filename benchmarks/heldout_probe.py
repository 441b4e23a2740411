"""What do profile vectors know about the items a user will pick next? A diagnostic for data without genres
(amazon-book-rlmrec), read beside the transfer results.

The collaborative reference is a truncated SVD of the training user-item matrix (rows L2-normalised, ``--rank``
factors): every item gets a factor vector ``q_i``. For every user with held-out (validation + test) items:

* **target**: the mean factor of the user's held-out items (unit length): where in the collaborative space the
  user goes next.
* **rows** (ridge regression, R² under 5-fold cross-validation over users, penalty chosen per row from a grid):
  ``history`` = the mean factor of the user's training items (what a CF model already knows); ``profile`` = the
  user's profile vector; ``history + profile`` (the gain over ``history`` is what the text adds beyond the
  interactions, the only thing transfer can add); ``shuffled profile`` (each user another user's vector: should
  be ~0) and ``history + shuffled``.
* **items** (``--items``): the same probe from item-profile vectors to each item's own factor ``q_i`` (items with
  at least ``--min-item-count`` training interactions), beside the shuffled control and log popularity.
* ``--reduce pca|umap --dim D``: the probe on the vectors a transfer would use, reduced by the library's
  ``Reducer`` fitted on the training split's users (items) only; default: the encoder's vectors as they are.

Nothing here trains a recommender; it runs in under a minute on 2 cores.

    python benchmarks/heldout_probe.py --config configs/bprmf_amazon_book.yaml \
        --users configs/profiles_amazon_book_import.yaml --items configs/profiles_amazon_book_items_import.yaml \
        --out benchmarks/results/heldout_probe_amazon-book.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

import llmkt
from llmkt.config import load_config
from llmkt.data import columns as C
from llmkt.experiments.inputs import load_dataset, split_dataset
from llmkt.experiments.profiles import export_vectors
from llmkt.transfer.reduce import Reducer
from vector_probe import cv_ridge_r2  # the same ridge probe as the genre diagnostic (benchmarks/ is on sys.path)

def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mean_rows(m: sp.csr_matrix, q: np.ndarray) -> np.ndarray:
    """Per row of the 0/1 matrix ``m``, the mean of ``q``'s rows over its non-zero columns."""
    counts = np.asarray(m.sum(1)).ravel()
    return np.asarray(m @ q) / np.maximum(counts, 1)[:, None]


def reduced(vectors: np.ndarray, mask: np.ndarray, train_rows: np.ndarray,
            args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """``vectors`` reduced to ``args.dim`` by ``args.reduce``, fitted on the rows of ``train_rows`` that have one."""
    if args.reduce == "none":
        return vectors, mask
    fit_rows = train_rows[mask[train_rows]]
    reducer = Reducer(method=args.reduce, dim=args.dim, seed=args.seed).fit(vectors[fit_rows])
    out = np.zeros((len(vectors), args.dim), dtype=np.float32)
    out[mask] = reducer.transform(vectors[mask])
    return out, mask


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="a run config: its data and split")
    ap.add_argument("--users", required=True, help="the user-profile job (YAML): its vectors")
    ap.add_argument("--items", help="the item-profile job (YAML): its vectors")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override of both profile jobs")
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--min-item-count", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reduce", choices=["none", "pca", "umap"], default="none",
                    help="reduce the vectors first (fitted on training users / items only)")
    ap.add_argument("--dim", type=int, default=64, help="width after --reduce")
    ap.add_argument("--out")
    args = ap.parse_args()

    cfg = load_config(args.config)
    ds = load_dataset(cfg)
    split = split_dataset(cfg, ds)
    n_u, n_i = ds.n_users + 1, ds.n_items + 1  # internal ids, 0 = padding

    def matrix(frame) -> sp.csr_matrix:
        m = sp.csr_matrix((np.ones(len(frame)), (frame[C.UID].to_numpy(), frame[C.IID].to_numpy())), shape=(n_u, n_i))
        m.data[:] = 1.0  # duplicates count once
        return m

    train = matrix(split.train)
    held = matrix(split.valid) + matrix(split.test)
    held.data[:] = 1.0
    norm = sp.diags(1.0 / np.maximum(np.sqrt(np.asarray(train.sum(1)).ravel()), 1.0)) @ train
    _, s, vt = svds(norm.astype(np.float64), k=args.rank, random_state=args.seed)
    q = vt.T * s  # (n_i, rank) item factors
    rng = np.random.default_rng(args.seed)

    uv = export_vectors(args.users, list(args.sets), check_split=split)
    users, umask = reduced(*uv.aligned(ds, "user"), np.unique(split.train[C.UID].to_numpy()), args)
    has_held = np.asarray(held.sum(1)).ravel() > 0
    rows = np.flatnonzero(umask & has_held)
    rows = rows[rows > 0]
    folds = rng.integers(0, 5, len(rows))
    target = unit(mean_rows(held, q)[rows])
    history = mean_rows(train, q)[rows]
    profile = users[rows]
    shuffled = profile[rng.permutation(len(rows))]
    out: dict = {"llmkt": llmkt.__version__, "config": args.config, "users": args.users, "rank": args.rank,
                 "n_users": int(len(rows)), "user_vectors": {"encoder": uv.meta.get("encoder"), "dim": int(users.shape[1]),
                                  "reduce": args.reduce},
                 "user_probe": {}}
    for name, x in [("history", history), ("profile", profile), ("history + profile", np.hstack([history, profile])),
                    ("shuffled profile", shuffled), ("history + shuffled", np.hstack([history, shuffled]))]:
        out["user_probe"][name] = cv_ridge_r2(x, target, folds)
        print(f"users  {name:<20} R2 {out['user_probe'][name]['r2']:+.4f}", flush=True)
    if args.items:
        iv = export_vectors(args.items, list(args.sets), check_split=split)
        items, imask = reduced(*iv.aligned(ds, "item"), np.unique(split.train[C.IID].to_numpy()), args)
        counts = np.asarray(train.sum(0)).ravel()
        sel = np.flatnonzero(imask & (counts >= args.min_item_count))
        sel = sel[sel > 0]
        ifolds = rng.integers(0, 5, len(sel))
        y = unit(q[sel])
        x = items[sel]
        pop = np.log1p(counts[sel])[:, None]
        out.update(items=args.items, n_items=int(len(sel)), item_probe={})
        for name, xi in [("log popularity", pop), ("profile", x), ("shuffled profile", x[rng.permutation(len(sel))]),
                         ("popularity + profile", np.hstack([pop, x]))]:
            out["item_probe"][name] = cv_ridge_r2(xi, y, ifolds)
            print(f"items  {name:<20} R2 {out['item_probe'][name]['r2']:+.4f}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
