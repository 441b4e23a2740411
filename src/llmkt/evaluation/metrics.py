"""Metric definitions on top-K lists, per user. Pure numpy, exact and hand-checkable.

For a user with relevant set R and top-K list L (ranks 1..K):

* ``HR@K``        = 1 if any of L is in R else 0
* ``Recall@K``    = |L ∩ R| / |R|
* ``Precision@K`` = |L ∩ R| / K
* ``NDCG@K``      = sum_{i: L_i in R} 1/log2(i+1)  /  sum_{i=1..min(|R|,K)} 1/log2(i+1)
* ``MRR@K``       = 1 / rank of the first relevant item in L, 0 if none
"""

from __future__ import annotations

import numpy as np

METRICS = ("NDCG", "Recall", "HR", "MRR", "Precision")


def parse_metric(name: str) -> tuple[str, int]:
    """``'NDCG@10'`` -> ``('NDCG', 10)``; raises ``ValueError`` naming the valid forms."""
    base, _, k = name.partition("@")
    if base not in METRICS or not k.isdigit() or int(k) < 1:
        raise ValueError(f"metric {name!r}: expected NAME@K with NAME in {list(METRICS)} and K >= 1, e.g. 'NDCG@10'.")
    return base, int(k)


def hits_matrix(topk: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """``hits[u, i]`` is True when ``topk[u, i]`` is in user u's relevant row (0 entries are padding)."""
    hits = (topk[:, :, None] == relevant[:, None, :]) & (relevant[:, None, :] > 0)
    return hits.any(-1)


def ranking_metrics(topk: np.ndarray, relevant: np.ndarray, ks: list[int],
                    metrics: tuple[str, ...] = METRICS) -> dict[str, np.ndarray]:
    """Per-user metric arrays for every metric and K.

    ``topk``: (U, Kmax) item ids, best first. ``relevant``: (U, R) item ids padded with 0; every user has >= 1.
    """
    kmax = max(ks)
    if topk.shape[1] < kmax:
        raise ValueError(f"top-k lists have {topk.shape[1]} columns, fewer than the largest K={kmax}.")
    hits = hits_matrix(topk[:, :kmax], relevant).astype(np.float64)  # (U, Kmax)
    n_rel = (relevant > 0).sum(1).astype(np.float64)  # (U,)
    if (n_rel == 0).any():
        raise ValueError("ranking_metrics: some users have no relevant item; drop them before evaluating.")
    discounts = 1.0 / np.log2(np.arange(2, kmax + 2))  # (Kmax,)
    first_hit = np.where(hits.any(1), hits.argmax(1), kmax)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        h = hits[:, :k]
        n_hit = h.sum(1)
        for m in metrics:
            if m == "HR":
                v = (n_hit > 0).astype(np.float64)
            elif m == "Recall":
                v = n_hit / n_rel
            elif m == "Precision":
                v = n_hit / k
            elif m == "NDCG":
                ideal = np.cumsum(discounts[:k])[np.minimum(n_rel, k).astype(np.int64) - 1]
                v = (h * discounts[:k]).sum(1) / ideal
            elif m == "MRR":
                v = np.where(first_hit < k, 1.0 / (first_hit + 1), 0.0)
            else:
                raise ValueError(f"unknown metric {m!r}; available: {list(METRICS)}")
            out[f"{m}@{k}"] = v
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney statistic, ties counted as 1/2)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positive and negative labels.")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # average ranks over ties
    _, start, counts = np.unique(s, return_index=True, return_counts=True)
    avg = start + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` against 0/1 ``labels``."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
