"""Non-learned reference rankings every model must beat: item popularity in the stage's history."""

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
