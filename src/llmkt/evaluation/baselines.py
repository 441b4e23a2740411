"""Non-learned references every model must beat: item popularity in the stage's history (ranking) and each
item's smoothed click rate in training (click prediction)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from llmkt.data import columns as C
from llmkt.data.splits import Split
from llmkt.evaluation.ranking import EvalResult, RankingProtocol, evaluate_ranking


class PopularityScorer:
    """Scores every item by its number of interactions in ``history`` (the same for every user)."""

    def __init__(self, history: pd.DataFrame, n_items: int):
        counts = np.bincount(history[C.IID].to_numpy(np.int64), minlength=n_items + 1).astype(np.float32)
        counts[0] = -np.inf
        self.scores = torch.from_numpy(counts)

    def __call__(self, uids: np.ndarray) -> torch.Tensor:
        return self.scores.expand(len(uids), -1).clone()


def evaluate_popularity(split: Split, stage: str, protocol: RankingProtocol) -> EvalResult:
    ds = split.dataset
    history = split.history(stage)
    return evaluate_ranking(PopularityScorer(history, ds.n_items), history, split.targets(stage), ds.n_users,
                            ds.n_items, protocol, stage=stage, user_ids=ds.user_map.external_ids)


class ItemRateCTR(torch.nn.Module):
    """Click-prediction reference: the logit of each item's smoothed click rate in ``history``,
    ``(clicks + prior·m) / (shows + m)`` with the global rate as prior, the same for every user."""

    def __init__(self, history: pd.DataFrame, n_items: int, positive_rating: float, m: float = 10.0):
        super().__init__()
        clicks = (history["rating"].to_numpy(np.float64) >= positive_rating).astype(np.float64)
        iid = history[C.IID].to_numpy(np.int64)
        shows = np.bincount(iid, minlength=n_items + 1)
        pos = np.bincount(iid, weights=clicks, minlength=n_items + 1)
        prior = clicks.mean() if len(clicks) else 0.5
        rate = np.clip((pos + prior * m) / (shows + m), 1e-6, 1 - 1e-6)
        self.register_buffer("item_logit", torch.from_numpy(np.log(rate / (1 - rate))).float())

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.item_logit[batch["iid"]]  # (B,)


def evaluate_item_rate(split: Split, stage: str, positive_rating: float) -> EvalResult:
    """AUC / LogLoss of :class:`ItemRateCTR` on the stage's rows, fitted on the training part (as the CTR models)."""
    from llmkt.evaluation.ctr import evaluate_ctr

    ds = split.dataset
    model = ItemRateCTR(split.train, ds.n_items, positive_rating)
    return evaluate_ctr(model, split.targets(stage), positive_rating, stage=stage, user_ids=ds.user_map.external_ids)
