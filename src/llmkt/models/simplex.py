"""SimpleX (Mao et al., 2021): user embedding fused with an aggregate of the user's interacted items, cosine
similarity to items, and the cosine contrastive loss with many negatives:
``L = (1 - cos(u, i+)) + w * mean_k relu(cos(u, i-_k) - margin)``.

Batch (``kind = "pairs"``): ``{"uid": (B,), "pos": (B,), "neg": (B, K), "hist": (B, H)}``, ``hist`` = the user's
most recent ``H`` training items (left-padded with 0).

Layer names: ``user_emb`` -> (B, d); ``item_emb``; ``aggregate`` (linear map of the masked mean of ``hist``
embeddings) -> (B, d); ``fuse`` -> (B, d), ``gamma * user + (1 - gamma) * aggregate``, the user representation.
Default transfer layer: ``fuse``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.models.base import Batch, Recommender


class Fuse(nn.Module):
    """``gamma * a + (1 - gamma) * b``: a module so that the fused user representation has a layer name."""

    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = gamma

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.gamma * a + (1 - self.gamma) * b


class SimpleX(Recommender):
    kind: ClassVar[str] = "pairs"

    def __init__(self, n_items: int, n_users: int, dim: int = 64, hist_len: int = 50, gamma: float = 0.5,
                 margin: float = 0.9, neg_weight: float = 150.0, dropout: float = 0.1, n_negatives: int = 100):
        super().__init__()
        self.n_items, self.n_users, self.hist_len, self.n_negatives = n_items, n_users, hist_len, n_negatives
        self.margin, self.neg_weight = margin, neg_weight
        self.user_emb = nn.Embedding(n_users + 1, dim)
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.aggregate = nn.Linear(dim, dim, bias=False)
        self.fuse = Fuse(gamma)
        self.dropout = nn.Dropout(dropout)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def _user(self, batch: Batch) -> torch.Tensor:
        hist = batch["hist"]  # (B, H)
        mask = (hist > 0).float().unsqueeze(-1)  # (B, H, 1)
        mean = (self.item_emb(hist) * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, d)
        return self.fuse(self.user_emb(batch["uid"]), self.aggregate(mean))  # (B, d)

    def loss(self, batch: Batch) -> torch.Tensor:
        u = F.normalize(self.dropout(self._user(batch)), dim=-1)  # (B, d)
        p = F.normalize(self.item_emb(batch["pos"]), dim=-1)  # (B, d)
        n = self.item_emb(batch["neg"])  # (B, K, d), not normalised: dividing the (B, K) dot products by the
        # (B, K) norms equals normalising the (B, K, d) rows first (F.normalize's eps too) at a third of the cost
        cos_pos = (u * p).sum(-1)  # (B,)
        cos_neg = torch.einsum("bd,bkd->bk", u, n) / n.norm(dim=-1).clamp_min(1e-12)  # (B, K)
        return ((1 - cos_pos) + self.neg_weight * F.relu(cos_neg - self.margin).mean(-1)).mean()

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight  # (n_items + 1, D); row 0 = padding

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self._user(batch)

    def score(self, batch: Batch) -> torch.Tensor:
        u = F.normalize(self._user(batch), dim=-1)  # (B, d)
        s = u @ F.normalize(self.item_emb.weight, dim=-1).T  # (B, n_items + 1)
        s[:, 0] = -torch.inf
        return s
