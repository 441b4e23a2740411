"""DeepFM (Guo et al., 2017): first-order weights + a factorisation machine over field embeddings + a DNN over
their concatenation, summed into one click logit.

Layer names: ``fields`` -> ((B, F, e), (B, F)); ``dnn.0`` ... ``dnn.{n-1}`` -> (B, hidden[i]); ``dnn_out`` -> (B, 1).
Default transfer layer: the last DNN layer ``dnn.{n-1}`` (one row per (user, item) pair; the row's user's vector
is the target).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llmkt.data.features import FeatureTables
from llmkt.models.base import Batch
from llmkt.models.ctr import CTRModel, mlp


class DeepFM(CTRModel):
    def __init__(self, n_items: int, n_users: int, embed_dim: int = 16, hidden: Sequence[int] = (128, 64),
                 dropout: float = 0.1, features: FeatureTables | None = None, n_extra_fields: int = 0):
        super().__init__(n_items, n_users, embed_dim, features, n_extra_fields)
        self.dnn = mlp([self.n_fields * embed_dim, *hidden], dropout)
        self.dnn_out = nn.Linear(hidden[-1], 1)
        self.bias = nn.Parameter(torch.zeros(()))

    def logits(self, batch: Batch, extra: list[torch.Tensor] | None = None) -> torch.Tensor:
        emb, first = self.embed(batch, extra)  # (B, F, e), (B,)
        fm = 0.5 * (emb.sum(1).pow(2) - emb.pow(2).sum(1)).sum(1)  # (B,) pairwise interactions
        deep = self.dnn_out(self.dnn(emb.flatten(1))).squeeze(-1)  # (B,)
        return self.bias + first + fm + deep
