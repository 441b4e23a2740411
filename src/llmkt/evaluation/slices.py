"""Slices of an evaluation: where does a model (or knowledge transfer) help?

* ``item_popularity``: test targets by their item's training popularity: ``head`` (the most popular share of
  items), ``torso``, ``tail`` (the least popular share, items never seen in training included);
* ``user_history``: test users by their number of training interactions (``<10``, ``10-49``, ``>=50`` with the
  default edges);
* ``cold_items``: the sequential-distillation paper's cold-start protocol, a change of the split: a seeded share
  of the items that occur in test keep only their ``keep`` earliest training interactions (0: none), and the
  slices ``cold`` / ``warm`` report test targets of those items and of the others.

User slices average the per-user table; item slices rank again with the targets restricted to the slice's items
(a user without such a target is not in the slice), so Recall and NDCG are the usual ones on that target set.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import pandas as pd

from llmkt.data import columns as C
from llmkt.data.splits import Split, _cutoffs
from llmkt.errors import DataError
from llmkt.evaluation.ranking import EvalResult


def item_popularity_buckets(split: Split, edges: tuple[float, float] = (0.2, 0.8)) -> dict[str, np.ndarray]:
    """Internal item ids of ``head``, ``torso``, ``tail`` by training count (ties broken by item id)."""
    n = split.dataset.n_items
    counts = np.bincount(split.train[C.IID].to_numpy(np.int64), minlength=n + 1)[1:]
    order = np.lexsort((np.arange(n), -counts)) + 1  # most popular first
    a, b = int(round(edges[0] * n)), int(round(edges[1] * n))
    return {"head": np.sort(order[:a]), "torso": np.sort(order[a:b]), "tail": np.sort(order[b:])}


def user_history_buckets(split: Split, edges: tuple[int, ...] = (10, 50)) -> dict[str, np.ndarray]:
    """Internal user ids by their number of training interactions."""
    n_train = split.cutoffs.set_index(C.UID)["n_train"]
    bounds = [0, *edges, np.inf]
    out = {}
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        name = f">={lo}" if hi == np.inf else (f"<{hi}" if lo == 0 else f"{lo}-{int(hi) - 1}")
        out[name] = n_train[(n_train >= lo) & (n_train < hi)].index.to_numpy()
    return out


def cold_items_split(split: Split, share: float, keep: int = 0, seed: int = 0) -> tuple[Split, np.ndarray]:
    """The split with a seeded ``share`` of its test items made cold (``keep`` earliest training interactions
    each) and those items' internal ids."""
    if not 0 < share <= 1:
        raise DataError(f"evaluation.slices.cold_items.share: expected a share in (0, 1], got {share}.")
    test_items = np.unique(split.test[C.IID].to_numpy())
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(test_items, size=max(1, int(round(share * len(test_items)))), replace=False))
    train = split.train
    is_cold = train[C.IID].isin(cold).to_numpy()
    rank = train[is_cold].sort_values([C.TIMESTAMP, C.ORDER], kind="stable").groupby(C.IID).cumcount()
    drop = rank.index[rank.to_numpy() >= keep]
    new_train = train.drop(index=drop).reset_index(drop=True)
    out = replace(split, train=new_train, cutoffs=_cutoffs(split.dataset, new_train),
                  params={**split.params, "cold_items": {"share": share, "keep": keep, "seed": seed,
                                                         "items": int(len(cold)), "train_rows_removed": int(len(drop))}})
    return out, cold


def user_slice(result: EvalResult, uids: np.ndarray) -> dict[str, float]:
    rows = result.per_user[result.per_user[C.UID].isin(uids)]
    return {"users": int(len(rows)), **{k: float(rows[k].mean()) for k in result.metrics if len(rows)}}


def evaluate_slices(split: Split, result: EvalResult, rank_with: Callable[[pd.DataFrame], EvalResult],
                    *, item_popularity: tuple[float, float] | None = None, user_history: tuple[int, ...] | None = None,
                    cold: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Metrics per slice of the test stage. ``rank_with(targets)`` ranks again for a subset of the test targets
    (the run's own scorer and protocol)."""
    out: dict[str, dict[str, float]] = {}
    if user_history is not None:
        for name, uids in user_history_buckets(split, user_history).items():
            out[f"users {name} train"] = user_slice(result, uids)
    groups: dict[str, np.ndarray] = {}
    if item_popularity is not None:
        groups.update({f"items {k}": v for k, v in item_popularity_buckets(split, item_popularity).items()})
    if cold is not None:
        groups["items cold"] = cold
        groups["items warm"] = np.setdiff1d(np.arange(1, split.dataset.n_items + 1), cold)
    for name, iids in groups.items():
        targets = split.test[split.test[C.IID].isin(iids)]
        if targets.empty:
            out[name] = {"users": 0, "targets": 0}
            continue
        r = rank_with(targets)
        out[name] = {"users": int(len(r.per_user)), "targets": int(len(targets)), **r.metrics}
    return out
