"""Shared parts of the click-prediction models (DeepFM, DCN): field embeddings over user id, item id and side
features, BCE on click labels, and scoring of all items for a user (so they can also rank).

Batch (``kind = "ctr"``): ``{"uid": (B,), "iid": (B,), "label": (B,)}``; side features are looked up from the
model's buffers (``llmkt.data.features.FeatureTables``). Extra dense fields (KAR's knowledge vectors, each
``(B, embed_dim)``) may be appended by a wrapper through ``logits(batch, extra)``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.data.features import FeatureTables
from llmkt.models.base import Batch, Recommender, score_in_chunks


class FieldEmbedding(nn.Module):
    """ids -> ``(B, F, e)`` field embeddings and ``(B, F)`` first-order weights.

    Fields in order: user id, item id, user side fields, item side fields, the multi-valued item field (mean of
    its codes' embeddings, padding ignored).
    """

    def __init__(self, n_users: int, n_items: int, dim: int, features: FeatureTables | None):
        super().__init__()
        ft = features or FeatureTables()
        cards = [n_users + 1, n_items + 1, *ft.user_cards, *ft.item_cards]
        self.names = ["user", "item", *ft.user_fields, *ft.item_fields]
        self.tables = nn.ModuleList(nn.Embedding(c, dim) for c in cards)
        self.first = nn.ModuleList(nn.Embedding(c, 1) for c in cards)
        self.has_multi = ft.multi_field is not None
        if self.has_multi:
            self.names.append(ft.multi_field)
            self.multi = nn.Embedding(ft.multi_card, dim, padding_idx=0)
            self.multi_first = nn.Embedding(ft.multi_card, 1, padding_idx=0)
        self.register_buffer("user_codes", torch.as_tensor(ft.user_codes if ft.user_fields else
                                                           torch.zeros(n_users + 1, 0, dtype=torch.long)))
        self.register_buffer("item_codes", torch.as_tensor(ft.item_codes if ft.item_fields else
                                                           torch.zeros(n_items + 1, 0, dtype=torch.long)))
        self.register_buffer("item_multi", torch.as_tensor(ft.item_multi if self.has_multi else
                                                           torch.zeros(n_items + 1, 0, dtype=torch.long)))
        for t in [*self.tables, *self.first]:
            nn.init.normal_(t.weight, std=0.01)

    @property
    def n_fields(self) -> int:
        return len(self.names)

    def forward(self, uid: torch.Tensor, iid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codes = torch.cat([uid[:, None], iid[:, None], self.user_codes[uid], self.item_codes[iid]], 1)  # (B, F0)
        emb = torch.stack([t(codes[:, f]) for f, t in enumerate(self.tables)], 1)  # (B, F0, e)
        first = torch.cat([t(codes[:, f]) for f, t in enumerate(self.first)], 1)  # (B, F0)
        if self.has_multi:
            m = self.item_multi[iid]  # (B, M)
            w = (m > 0).float().unsqueeze(-1)  # (B, M, 1)
            n = w.sum(1).clamp(min=1.0)  # (B, 1)
            emb = torch.cat([emb, ((self.multi(m) * w).sum(1) / n)[:, None, :]], 1)  # (B, F, e)
            first = torch.cat([first, (self.multi_first(m) * w).sum(1) / n], 1)  # (B, F)
        return emb, first


def mlp(widths: list[int], dropout: float) -> nn.Sequential:
    """``Linear -> ReLU -> Dropout`` blocks named ``0``, ``1``, ...; each block's output is ``(B, widths[i+1])``."""
    return nn.Sequential(*[nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout))
                           for a, b in zip(widths[:-1], widths[1:])])


class CTRModel(Recommender):
    kind: ClassVar[str] = "ctr"

    def __init__(self, n_items: int, n_users: int, embed_dim: int, features: FeatureTables | None,
                 n_extra_fields: int = 0, score_chunk: int = 2048):
        super().__init__()
        self.n_items, self.n_users, self.embed_dim = n_items, n_users, embed_dim
        self.n_extra_fields, self.score_chunk = n_extra_fields, score_chunk
        self.fields = FieldEmbedding(n_users, n_items, embed_dim, features)
        self.extra_first = nn.Linear(embed_dim, 1, bias=False) if n_extra_fields else None

    @property
    def n_fields(self) -> int:
        return self.fields.n_fields + self.n_extra_fields

    def embed(self, batch: Batch, extra: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, F, e)`` embeddings (extra dense fields appended) and the ``(B,)`` first-order term."""
        emb, first = self.fields(batch["uid"], batch["iid"])
        first = first.sum(1)
        if self.n_extra_fields:
            if extra is None or len(extra) != self.n_extra_fields:
                # no knowledge: zero vectors, so the model reduces to its backbone (KAR's ablation)
                extra = [emb.new_zeros(emb.shape[0], self.embed_dim) for _ in range(self.n_extra_fields)]
            x = torch.stack(extra, 1)  # (B, n_extra, e)
            emb = torch.cat([emb, x], 1)
            first = first + self.extra_first(x).sum((1, 2))
        return emb, first

    def logits(self, batch: Batch, extra: list[torch.Tensor] | None = None) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(batch), batch["label"].float())

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.fields.tables[0](batch["uid"])  # (B, e)

    def score(self, batch: Batch) -> torch.Tensor:
        return score_rows(self.logits, batch["uid"], self.n_items, self.score_chunk)


def score_rows(logits, uid: torch.Tensor, n_items: int, chunk: int) -> torch.Tensor:
    """All-item scores ``(B, n_items + 1)`` for a model whose ``logits`` take flat ``{"uid", "iid"}`` rows."""
    def pairs(u: torch.Tensor, items: torch.Tensor) -> torch.Tensor:  # (B,), (B, C) -> (B, C)
        return logits({"uid": u[:, None].expand_as(items).reshape(-1), "iid": items.reshape(-1)}).view(items.shape)

    return score_in_chunks(pairs, uid, n_items, chunk)
