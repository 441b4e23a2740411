"""DCN (Wang et al., 2017): a cross network ``x_{l+1} = x0 * (x_l . w_l) + b_l + x_l`` beside a DNN, both over
the concatenated field embeddings ``x0``, joined by one linear layer into a click logit.

Layer names: ``fields``; ``cross.0`` ... (weights of each cross layer, no module output); ``dnn.0`` ... ``dnn.{n-1}``
-> (B, hidden[i]); ``combine`` -> (B, 1). Default transfer layer: the last DNN layer ``dnn.{n-1}``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llmkt.data.features import FeatureTables
from llmkt.models.base import Batch
from llmkt.models.ctr import CTRModel, mlp


class CrossLayer(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(width) * 0.01)
        self.b = nn.Parameter(torch.zeros(width))

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * (x @ self.w)[:, None] + self.b + x  # (B, width)


class DCN(CTRModel):
    def __init__(self, n_items: int, n_users: int, embed_dim: int = 16, n_cross: int = 3,
                 hidden: Sequence[int] = (128, 64), dropout: float = 0.1, features: FeatureTables | None = None,
                 n_extra_fields: int = 0):
        super().__init__(n_items, n_users, embed_dim, features, n_extra_fields)
        width = self.n_fields * embed_dim
        self.cross = nn.ModuleList(CrossLayer(width) for _ in range(n_cross))
        self.dnn = mlp([width, *hidden], dropout)
        self.combine = nn.Linear(width + hidden[-1], 1)

    def logits(self, batch: Batch, extra: list[torch.Tensor] | None = None) -> torch.Tensor:
        emb, _ = self.embed(batch, extra)
        x0 = emb.flatten(1)  # (B, F * e)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return self.combine(torch.cat([x, self.dnn(x0)], 1)).squeeze(-1)  # (B,)
