"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence, next-item prediction.

Default loss: cross-entropy over all items at every non-padding position (as RePlay/RecTools "softmax");
option ``loss='bce'``: the paper's binary cross-entropy with sampled negatives. Logits are computed only at
positions with a target, which skips the padding's share of the (N, n_items) output product.

Layer names (stable, used for knowledge transfer): ``item_emb``, ``pos_emb``, ``emb_dropout``,
``blocks.{i}`` (``attn_norm``, ``attn``, ``ffn_norm``, ``ffn``), ``final_norm``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.models.attention import TransformerBlock, attention_mask
from llmkt.models.base import Batch, SequentialRecommender
from llmkt.models.losses import linear_cross_entropy


class SASRec(SequentialRecommender):
    def __init__(self, n_items: int, max_len: int = 200, hidden: int = 64, n_blocks: int = 2, n_heads: int = 2,
                 ff_hidden: int | None = None, dropout: float = 0.2, loss: str = "ce", n_negatives: int = 1,
                 norm_first: bool = False):
        super().__init__()
        if loss not in ("ce", "bce"):
            raise ValueError(f"model.loss: expected 'ce' or 'bce', got {loss!r}.")
        self.n_items, self.max_len, self.hidden = n_items, max_len, hidden
        self.loss_type, self.n_negatives = loss, n_negatives
        self.item_emb = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(hidden, n_heads, ff_hidden or hidden, dropout,
                                                     norm_first=norm_first)
                                    for _ in range(n_blocks))
        self.final_norm = nn.LayerNorm(hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, D)`` of left-padded ``seq`` ``(B, L)``; padding positions are zero."""
        length = seq.shape[1]
        valid = seq > 0  # (B, L)
        pos = torch.arange(self.max_len - length, self.max_len, device=seq.device)  # right-aligned positions
        x = self.item_emb(seq) * math.sqrt(self.hidden) + self.pos_emb(pos)[None]  # (B, L, D)
        x = self.emb_dropout(x) * valid[..., None]
        mask = attention_mask(valid, causal=True)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask) * valid[..., None]
        return self.final_norm(x)  # (B, L, D)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = h @ self.item_emb.weight.T  # (N, n_items + 1)
        logits[:, 0] = -torch.inf
        return logits

    def loss(self, batch: Batch) -> torch.Tensor:
        seq = batch["seq"]  # (B, L + 1)
        inputs, targets = seq[:, :-1], seq[:, 1:]  # (B, L) each
        h = self.encode(inputs)  # (B, L, D)
        has_target = (targets > 0) & (inputs > 0)  # (B, L)
        h, tgt = h[has_target], targets[has_target]  # (N, D), (N,)
        if self.loss_type == "ce":  # == F.cross_entropy(self._logits(h), tgt), without the (N, V) logits
            return linear_cross_entropy(h, self.item_emb.weight[1:], tgt - 1)
        neg = torch.randint(1, self.n_items + 1, (tgt.shape[0], self.n_negatives), device=h.device)  # (N, K)
        pos_logit = (h * self.item_emb(tgt)).sum(-1)  # (N,)
        neg_logit = (h[:, None, :] * self.item_emb(neg)).sum(-1)  # (N, K)
        return (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
                + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))

    def sequence_mask(self, batch: Batch) -> torch.Tensor:
        """``(B, L)`` real positions of the sequence ``loss(batch)`` encodes (its inputs ``seq[:, :-1]``)."""
        return batch["seq"][:, :-1] > 0

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight  # (n_items + 1, D); row 0 = padding

    def user_representation(self, batch: Batch) -> torch.Tensor:
        seq = batch["seq"][:, -self.max_len:]  # (B, L)
        return self.encode(seq)[:, -1]  # (B, D): the state after the most recent item

    def score(self, batch: Batch) -> torch.Tensor:
        return self._logits(self.user_representation(batch))  # (B, n_items + 1)
