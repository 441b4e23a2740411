"""What do profile vectors know about their users? A diagnostic to read the transfer results against.

For each vector file (`llmkt profiles export` of a ratio-split profile job, or benchmarks/genre_vectors.py) on the
ratio split of a dataset:

* **spread**: participation ratio of the covariance spectrum, (sum λ)² / sum λ², and the number of principal
  directions that hold 90 % of the variance. Few directions = vectors that say little about who the user is.
* **history probe**: ridge regression from the vector to the user's *training* genre histogram (what the
  profile was written from), R² under 5-fold cross-validation over users.
* **future probe**: the same to the genre histogram of the user's *held-out* validation + test items, R² under
  the same folds. The reference row ``history genres`` uses the training histogram itself as the input: a
  vector that beats it knows more about the future than simple counting does.
* **identity**: share of users whose nearest other vector (cosine) belongs to one of the 10 users whose
  training histories share the most items with theirs, next to chance: whether the vectors tell similar users
  apart.
* **genre naming** (``--texts STORE``, text profiles only): on each profile's genre line (``Preferences:`` for the
  LLM prompt, ``Top genres by count:`` for ``template``), the share of the user's 4 most frequent training genres
  that it names (recall) and the share of named genres among those 4 (precision), next to a constant answer (the
  4 genres most often in users' top 4). Matching is by whole words (genre names, plurals, a few spellings); a rough check.

The ridge penalty is chosen per row from a fixed grid by the same cross-validation (slightly optimistic, equally
for every row). Nothing here trains a recommender; it runs in seconds.

    python benchmarks/vector_probe.py --data-dir ../shared/data --dataset ml-100k \
        --vectors runs/vectors/ml-100k-{llm,template,random}.npz --out benchmarks/results/vector_probe_ml-100k.json
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

import llmkt
from llmkt.data import columns as C
from llmkt.experiments.inputs import load_dataset, split_dataset
from llmkt.profiles.store import ProfileStore
from llmkt.data.vectors import ProfileVectors

from llmkt.data.features import genre_histograms, genre_vocab

PENALTIES = [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0]


def spread(x: np.ndarray) -> dict:
    lam = np.clip(np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1], 0, None)
    share = np.cumsum(lam) / lam.sum()
    return {"participation_ratio": float(lam.sum() ** 2 / (lam ** 2).sum()),
            "dims_for_90pct_variance": int(np.searchsorted(share, 0.9) + 1), "dims": int(x.shape[1])}


def cv_ridge_r2(x: np.ndarray, y: np.ndarray, folds: np.ndarray) -> dict:
    """Out-of-fold R² (variance-weighted over targets) of ridge regression, best penalty of PENALTIES."""
    best = None
    for lam in PENALTIES:
        pred = np.zeros_like(y)
        for f in np.unique(folds):
            tr, te = folds != f, folds == f
            mu_x, sd_x, mu_y = x[tr].mean(0), x[tr].std(0) + 1e-8, y[tr].mean(0)
            xt = (x[tr] - mu_x) / sd_x
            w = np.linalg.solve(xt.T @ xt + lam * np.eye(x.shape[1]), xt.T @ (y[tr] - mu_y))
            pred[te] = ((x[te] - mu_x) / sd_x) @ w + mu_y
        r2 = 1.0 - ((y - pred) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()
        if best is None or r2 > best["r2"]:
            best = {"r2": float(r2), "penalty": lam}
    return best


def identity(x: np.ndarray, overlap: np.ndarray, rng: np.random.Generator) -> dict:
    """Share of users whose cosine-nearest other vector belongs to one of their top-10 history-overlap users."""
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nn = sim.argmax(1)
    top = np.argsort(-overlap, axis=1)[:, :10]
    hit = float(np.mean([nn[i] in top[i] for i in range(len(x))]))
    chance = float(np.mean([rng.integers(0, len(x) - 1) in top[i] for i in range(len(x))]))
    return {"nearest_is_top10_overlap": hit, "chance": chance}


SPELLINGS = {"Sci-Fi": ("sci-fi", "science fiction", "scifi"), "Children's": ("children", "kids", "family"),
             "Film-Noir": ("film-noir", "film noir", "noir"), "Animation": ("animation", "animated"),
             "Comedy": ("comedy", "comedies"), "Mystery": ("mystery", "mysteries")}  # plain plurals: `s?` below
GENRE_LINE = re.compile(r"^\s*(?:preferences|top genres by count)\s*:(.*)$", re.IGNORECASE | re.MULTILINE)


def named_genres(text: str, genres: list[str]) -> set[str] | None:
    """Genres named on a profile's genre line, or None when the text has no such line."""
    m = GENRE_LINE.search(text)
    if m is None:
        return None
    line = m.group(1).lower()
    return {g for g in genres
            if any(re.search(rf"\b{re.escape(s)}s?\b", line) for s in SPELLINGS.get(g, (g.lower(),)))}


def genre_naming(store: str, split, past: np.ndarray, k: int = 4) -> dict:
    """Recall/precision of the genres a store's profiles name against each user's top-k training genres."""
    ds = split.dataset
    names = genre_vocab(split.dataset)  # the columns of `past`
    genres = [g for g in names if g != "unknown"]
    with ProfileStore(store, create=False) as st:
        rows = [(r.external_user, r.text) for r in st.records(dataset=ds.name)]
    ids = [u for u, _ in rows]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{store}: more than one profile per user; pass a store holding one job")
    internal = ds.user_map.to_internal(ids).tolist()
    known = past * np.array([g != "unknown" for g in names])
    top = {u: {names[j] for j in np.argsort(-known[u], kind="stable")[:k] if known[u, j] > 0} for u in internal}
    most = pd.Series([g for t in top.values() for g in t]).value_counts().index[:k].tolist()
    rec, prec, const, missing = [], [], [], 0
    named_n, top_n = dict.fromkeys(genres, 0), dict.fromkeys(genres, 0)
    for u, (_, text) in zip(internal, rows):
        named = named_genres(text, genres)
        truth = top[u]
        if named is None:
            missing += 1
            continue
        for g in named:
            named_n[g] += 1
        for g in truth:
            top_n[g] += 1
        rec.append(len(named & truth) / max(len(truth), 1))
        prec.append(len(named & truth) / len(named) if named else 0.0)
        const.append(len(set(most) & truth) / max(len(truth), 1))
    return {"store": store, "profiles": len(rows), "without_genre_line": missing, "k": k,
            "recall": float(np.mean(rec)), "precision": float(np.mean(prec)),
            "constant_answer": most, "constant_recall": float(np.mean(const)),
            "per_genre_share": {g: {"named": named_n[g] / len(rec), f"in_top{k}": top_n[g] / len(rec)}
                                for g in genres if named_n[g] or top_n[g]}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--vectors", nargs="+", required=True, help=".npz files of ProfileVectors")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--texts", nargs="*", default=[], help="profile stores (.sqlite) for the genre-naming check")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    cfg = llmkt.load_config(None, [f"data.data_dir={args.data_dir}", f"data.name={args.dataset}", "split.kind=ratio"])
    split = split_dataset(cfg, load_dataset(cfg))
    ds = split.dataset
    past = genre_histograms(split.dataset, split.train).astype(np.float64)
    future = genre_histograms(split.dataset, pd.concat([split.valid, split.test])).astype(np.float64)
    users = np.arange(1, ds.n_users + 1)
    inter = np.zeros((ds.n_users + 1, ds.n_items + 1), dtype=np.float32)
    inter[split.train[C.UID].to_numpy(), split.train[C.IID].to_numpy()] = 1.0
    rng = np.random.default_rng(0)
    folds = rng.permutation(np.arange(len(users)) % args.folds)

    inputs = {"history genres (reference, no text)": (past[users], users)}
    for p in args.vectors:
        pv = ProfileVectors.load(p)
        mat, mask = pv.aligned(ds)
        have = users[mask[users]]
        inputs[Path(p).stem] = (mat[have].astype(np.float64), have)

    rows = {}
    for name, (x, have) in inputs.items():
        idx = have - 1  # row of each user in `users`
        ov = inter[have] @ inter[have].T
        np.fill_diagonal(ov, -1)
        rows[name] = {"users": int(len(have)), **spread(x),
                      "history_probe": cv_ridge_r2(x, past[have], folds[idx]),
                      "future_probe": cv_ridge_r2(x, future[have], folds[idx]),
                      "identity": identity(x, ov, np.random.default_rng(1))}
        r = rows[name]
        print(f"{name:40s} users {r['users']:4d}  PR {r['participation_ratio']:6.1f}  "
              f"90% dims {r['dims_for_90pct_variance']:3d}/{r['dims']:3d}  "
              f"R2 history {r['history_probe']['r2']:.3f}  R2 future {r['future_probe']['r2']:.3f}  "
              f"nearest=top10-overlap {r['identity']['nearest_is_top10_overlap']:.3f} "
              f"(chance {r['identity']['chance']:.3f})", flush=True)
    naming = {}
    for store in args.texts:
        naming[Path(store).stem] = n = genre_naming(store, split, past)
        print(f"{Path(store).stem:40s} genre line names {n['recall']:.3f} of the user's top-{n['k']} training "
              f"genres (precision {n['precision']:.3f}; constant {n['constant_answer']}: "
              f"{n['constant_recall']:.3f}); {n['without_genre_line']} of {n['profiles']} without a genre line",
              flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"dataset": args.dataset, "split": "ratio", "folds": args.folds,
                                              "rows": rows, "genre_naming": naming}, indent=1))


if __name__ == "__main__":
    main()
