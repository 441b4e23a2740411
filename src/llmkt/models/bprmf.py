"""BPR-MF (Rendle et al., 2009): matrix factorisation trained with the Bayesian personalised ranking loss.

Batch (``kind = "pairs"``): ``{"uid": (B,), "pos": (B,), "neg": (B, K)}``.
Loss: ``mean(softplus(s_neg - s_pos))`` = ``-mean(log sigmoid(s_pos - s_neg))`` over the K negatives, plus
``reg * (|u|^2 + |p|^2 + mean_k |n_k|^2) / 2`` averaged over the batch. Score: ``u @ item_emb.T``.

Layer names: ``user_emb`` -> (B, dim), ``item_emb``. Default transfer layer: ``user_emb``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.models.base import Batch, Recommender


class BPRMF(Recommender):
    kind: ClassVar[str] = "pairs"

    def __init__(self, n_items: int, n_users: int, dim: int = 64, reg: float = 0.0, n_negatives: int = 1):
        super().__init__()
        self.n_items, self.n_users, self.reg, self.n_negatives, self.hist_len = n_items, n_users, reg, n_negatives, 0
        self.user_emb = nn.Embedding(n_users + 1, dim)
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def loss(self, batch: Batch) -> torch.Tensor:
        u = self.user_emb(batch["uid"])  # (B, d)
        p = self.item_emb(batch["pos"])  # (B, d)
        n = self.item_emb(batch["neg"])  # (B, K, d)
        s_pos = (u * p).sum(-1)  # (B,)
        s_neg = torch.einsum("bd,bkd->bk", u, n)  # (B, K)
        loss = F.softplus(s_neg - s_pos[:, None]).mean()
        if self.reg > 0:
            loss = loss + self.reg * 0.5 * (u.pow(2).sum(-1) + p.pow(2).sum(-1)
                                            + n.pow(2).sum(-1).mean(-1)).mean()
        return loss

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight  # (n_items + 1, D); row 0 = padding

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.user_emb(batch["uid"])  # (B, d)

    def score(self, batch: Batch) -> torch.Tensor:
        s = self.user_representation(batch) @ self.item_emb.weight.T  # (B, n_items + 1)
        s[:, 0] = -torch.inf
        return s
