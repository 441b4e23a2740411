"""The baselines a user tries before knowledge transfer: rank by text alone, and add the text to a trained model.

* :class:`TextScorer`: cosine similarity of each user's profile vector to each item's profile vector
  (``(B, n_items + 1)``, column 0 = -inf). A user or item without a vector scores 0 with everything (no
  evidence; the evaluator breaks ties by index).
* :class:`EnsembleScorer`: the score-sum ensemble ``z(model) + w * z(text)``, each score standardised per user over
  the items (mean 0, std 1), because a model's scores and cosines live on different scales; ``w`` is chosen on
  validation (:func:`choose_weight`), never on test.

Both are scorers in the evaluator's sense (``uids -> (B, n_items + 1)`` tensors), so every metric, slice and paired
test applies to them unchanged. Objects in, no configs (``llmkt.experiments.baselines`` builds them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Scorer = Callable[[np.ndarray], torch.Tensor]


class TextScorer:
    def __init__(self, users: np.ndarray, items: np.ndarray):
        """``users`` ``(n_users + 1, d)`` and ``items`` ``(n_items + 1, d)`` by internal id (zero rows: no vector)."""
        if users.shape[1] != items.shape[1]:
            raise ValueError(f"text scorer: user vectors are {users.shape[1]}-d but item vectors {items.shape[1]}-d; "
                             "embed both with the same encoder.")
        self.users = F.normalize(torch.as_tensor(users, dtype=torch.float32), dim=1)  # zero rows stay zero
        self.items = F.normalize(torch.as_tensor(items, dtype=torch.float32), dim=1)

    def __call__(self, uids: np.ndarray) -> torch.Tensor:
        s = self.users[torch.as_tensor(np.asarray(uids, dtype=np.int64))] @ self.items.T  # (B, n_items + 1)
        s[:, 0] = -torch.inf
        return s


def standardize(scores: torch.Tensor) -> torch.Tensor:
    """Per row over the real items (column 0 left at -inf): ``(s - mean) / std`` (std 0 -> 1)."""
    body = scores[:, 1:]
    std = body.std(dim=1, keepdim=True)
    out = torch.empty_like(scores)
    out[:, 0] = -torch.inf
    out[:, 1:] = (body - body.mean(dim=1, keepdim=True)) / torch.where(std > 0, std, torch.ones_like(std))
    return out


@dataclass
class EnsembleScorer:
    model: Scorer
    text: Scorer
    weight: float

    def __call__(self, uids: np.ndarray) -> torch.Tensor:
        a = standardize(self.model(uids).float())
        if self.weight == 0:
            return a
        return a + self.weight * standardize(self.text(uids).float())


def choose_weight(evaluate_valid: Callable[[float], float], weights: Sequence[float]) -> tuple[float, dict[float, float]]:
    """The weight with the best validation metric (``evaluate_valid(w)``; ties: the smaller weight, 0 = the
    model alone, so the ensemble never ships text that validation says does not help)."""
    if not weights:
        raise ValueError("choose_weight: no weights to choose from")
    curve = {float(w): float(evaluate_valid(float(w))) for w in sorted(set(weights))}
    best = max(curve, key=lambda w: (curve[w], -w))
    return best, curve
