import math

import numpy as np
import pandas as pd
import torch

from llmkt.data import columns as C
from llmkt.evaluation.baselines import ItemRateCTR, PopularityScorer


def _history() -> pd.DataFrame:
    # item 1: 3 shows, 2 clicks; item 2: 1 show, 0 clicks; item 3: never shown
    return pd.DataFrame({C.UID: [1, 2, 3, 1], C.IID: [1, 1, 1, 2], "rating": [5.0, 4.0, 2.0, 1.0]})


def test_popularity_scores_are_training_counts_and_padding_never_wins():
    s = PopularityScorer(_history(), n_items=3)(np.array([1, 2]))
    assert s.shape == (2, 4)
    assert s[0, 1:].tolist() == [3.0, 1.0, 0.0]
    assert s[1, 0] == -math.inf


def test_item_rate_ctr_is_smoothed_click_rate_with_global_prior():
    m = ItemRateCTR(_history(), n_items=3, positive_rating=4.0, m=2.0)
    prior = 2 / 4
    expected = [(2 + prior * 2) / (3 + 2), (0 + prior * 2) / (1 + 2), prior]  # items 1, 2, 3
    p = torch.sigmoid(m.logits({"iid": torch.tensor([1, 2, 3])}))
    assert np.allclose(p.numpy(), expected, atol=1e-6)
