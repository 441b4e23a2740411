"""One ranking evaluator for every model: full ranking (default) or the sampled protocol.

A model is evaluated through a *scorer*: a function from a batch of internal user ids to a
``(B, n_items + 1)`` score tensor (column 0 is padding and is never recommended). The evaluator masks the
items each user saw in the history (train for validation, train + valid for test) unless ``exclude_seen`` is
off, takes the top-K, and returns per-user metric arrays for significance tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np
import pandas as pd
import torch

from llmkt.data import columns as C
from llmkt.data.sequences import csr_items
from llmkt.evaluation.metrics import METRICS, ranking_metrics

Scorer = Callable[[np.ndarray], torch.Tensor]


@dataclass
class EvalResult:
    """Mean metrics, per-user arrays and the protocol label that must travel with every number."""

    metrics: dict[str, float]
    per_user: pd.DataFrame
    protocol: str
    stage: str = ""
    extra: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.4f}" for k, v in self.metrics.items())
        return f"EvalResult({self.stage} [{self.protocol}]: {vals})"


@dataclass
class RankingProtocol:
    ks: list[int] = field(default_factory=lambda: [10, 20])
    metrics: tuple[str, ...] = METRICS
    exclude_seen: bool = True
    kind: Literal["full", "sampled"] = "full"
    n_negatives: int = 100
    sampler: Literal["uniform", "popularity"] = "uniform"
    seed: int = 0

    def label(self) -> str:
        seen = "seen items excluded" if self.exclude_seen else "seen items kept"
        if self.kind == "full":
            return f"full ranking, {seen}"
        return f"sampled: 1 positive + {self.n_negatives} {self.sampler} negatives, {seen}"


def _pad_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> np.ndarray:
    lens = indptr[rows + 1] - indptr[rows]
    width = max(1, int(lens.max()) if len(lens) else 1)
    out = np.zeros((len(rows), width), dtype=np.int64)
    col = np.arange(width)
    mask = col[None, :] < lens[:, None]
    src = indptr[rows][:, None] + col[None, :]
    out[mask] = indices[src[mask]]
    return out


def evaluate_ranking(scorer: Scorer, history: pd.DataFrame, targets: pd.DataFrame, n_users: int, n_items: int,
                     protocol: RankingProtocol | None = None, batch_size: int = 512, stage: str = "",
                     item_popularity: np.ndarray | None = None, user_ids: np.ndarray | None = None) -> EvalResult:
    """Evaluate ``scorer`` on the users that have targets.

    ``history`` holds what the model may know (its items are excluded from the ranking when
    ``protocol.exclude_seen``); ``targets`` the relevant items. ``user_ids`` maps uid -> external id for the
    per-user table.
    """
    p = protocol or RankingProtocol()
    kmax = max(p.ks)
    users = np.unique(targets[C.UID].to_numpy(np.int64))
    t_ptr, t_idx = csr_items(targets, n_users)
    h_ptr, h_idx = csr_items(history, n_users)
    rng = np.random.default_rng(p.seed)
    if p.kind == "sampled":
        if item_popularity is None:
            item_popularity = np.bincount(history[C.IID].to_numpy(np.int64), minlength=n_items + 1).astype(float)
        # popularity sampling: probability proportional to the item's count in the history (+1, so that every
        # item can be drawn)
        probs = item_popularity[1:].astype(np.float64) + 1.0 if p.sampler == "popularity" else None
    chunks: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(users), batch_size):
            batch = users[start:start + batch_size]
            scores = scorer(batch).float()  # (B, n_items + 1)
            scores[:, 0] = -torch.inf
            relevant = _pad_rows(t_ptr, t_idx, batch)  # (B, R)
            if p.exclude_seen:
                seen = torch.from_numpy(_pad_rows(h_ptr, h_idx, batch))  # (B, S), 0 = padding -> col 0 already -inf
                scores.scatter_(1, seen, -torch.inf)
            if p.kind == "full":
                k = min(kmax, scores.shape[1])  # a catalogue smaller than K: the list is shorter, padded with -1
                topk = torch.topk(scores, k, dim=1).indices.numpy()
                if k < kmax:
                    topk = np.concatenate([topk, np.full((len(topk), kmax - k), -1, dtype=topk.dtype)], axis=1)
                result = ranking_metrics(topk, relevant, p.ks, p.metrics)
            else:
                result = _sampled_batch(scores.numpy(), relevant, p, rng, probs, n_items)
            for k, v in result.items():
                chunks.setdefault(k, []).append(v)
    per_user = pd.DataFrame({C.UID: users})
    if user_ids is not None:
        per_user.insert(1, C.USER, user_ids[users - 1])
    for k, v in chunks.items():
        per_user[k] = np.concatenate(v)
    means = {k: float(per_user[k].mean()) for k in chunks}
    return EvalResult(means, per_user, p.label(), stage)


def _sampled_batch(scores: np.ndarray, relevant: np.ndarray, p: RankingProtocol, rng: np.random.Generator,
                   weights: np.ndarray | None, n_items: int) -> dict[str, np.ndarray]:
    """Rank each user's first relevant item among ``n_negatives`` items drawn without replacement from the items
    that are neither excluded (seen) nor relevant. If fewer remain, all of them are used."""
    b = scores.shape[0]
    pos = relevant[:, 0]
    cand = np.zeros((b, p.n_negatives), dtype=np.int64)  # 0 = no candidate (scored -inf below)
    for row in range(b):  # one vectorised draw per user
        allowed = np.isfinite(scores[row, 1:])
        rel = relevant[row][relevant[row] > 0]
        allowed[rel - 1] = False
        pool = np.flatnonzero(allowed) + 1
        k = min(p.n_negatives, len(pool))
        w = None
        if weights is not None:
            w = weights[pool - 1]
            w = w / w.sum() if w.sum() > 0 else None
        cand[row, :k] = rng.choice(pool, size=k, replace=False, p=w)
    s = np.take_along_axis(scores, np.concatenate([pos[:, None], cand], axis=1), axis=1)  # (B, 1 + N)
    s[:, 1:][cand == 0] = -np.inf
    # pessimistic ties: a negative with an equal score ranks above the positive
    rank = (s[:, 1:] >= s[:, :1]).sum(1)  # 0-based rank of the positive
    order = np.full((b, max(p.ks)), -1, dtype=np.int64)
    for k in range(order.shape[1]):
        order[:, k] = np.where(rank == k, pos, -1)
    return ranking_metrics(order, pos[:, None], p.ks, p.metrics)
