"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained by masked item prediction (Cloze).

Training masks each real position with probability ``mask_prob`` (at least one per sequence: the last) and
predicts the masked items with cross-entropy over all items. Scoring appends a ``[MASK]`` token after the
history and reads the prediction there.

Layer names: ``item_emb`` (``n_items + 2`` rows: padding 0, items, ``[MASK]``), ``pos_emb``, ``emb_norm``,
``emb_dropout``, ``blocks.{i}``, ``head`` (``dense``, ``norm``), ``out_bias``.
"""

from __future__ import annotations

import torch
from torch import nn

from llmkt.models.attention import TransformerBlock, attention_mask
from llmkt.models.base import Batch, SequentialRecommender
from llmkt.models.losses import linear_cross_entropy


class PredictionHead(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.dense(x)))


class BERT4Rec(SequentialRecommender):
    def __init__(self, n_items: int, max_len: int = 200, hidden: int = 64, n_blocks: int = 2, n_heads: int = 2,
                 ff_hidden: int | None = None, dropout: float = 0.2, mask_prob: float = 0.2):
        super().__init__()
        if not 0 < mask_prob < 1:
            raise ValueError(f"model.mask_prob: expected a value in (0, 1), got {mask_prob}.")
        self.n_items, self.max_len, self.hidden, self.mask_prob = n_items, max_len, hidden, mask_prob
        self.mask_token = n_items + 1
        self.item_emb = nn.Embedding(n_items + 2, hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, hidden)
        self.emb_norm = nn.LayerNorm(hidden)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(hidden, n_heads, ff_hidden or 4 * hidden, dropout, "gelu")
                                    for _ in range(n_blocks))
        self.head = PredictionHead(hidden)
        self.out_bias = nn.Parameter(torch.zeros(n_items + 1))
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.trunc_normal_(p, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states ``(B, L, D)`` of left-padded ``seq`` ``(B, L)`` (may contain ``[MASK]``)."""
        length = seq.shape[1]
        valid = seq > 0  # (B, L)
        pos = torch.arange(self.max_len - length, self.max_len, device=seq.device)
        x = self.emb_dropout(self.emb_norm(self.item_emb(seq) + self.pos_emb(pos)[None]))  # (B, L, D)
        mask = attention_mask(valid, causal=False)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(x)  # (B, L, D)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = h @ self.item_emb.weight[: self.n_items + 1].T + self.out_bias  # (N, n_items + 1)
        logits[:, 0] = -torch.inf
        return logits

    def loss(self, batch: Batch) -> torch.Tensor:
        seq = batch["seq"][:, -self.max_len:]  # (B, L)
        valid = seq > 0
        masked = (torch.rand(seq.shape, device=seq.device) < self.mask_prob) & valid  # (B, L)
        masked[:, -1] |= ~masked.any(1) & valid[:, -1]  # every non-empty sequence predicts >= 1 item
        inputs = seq.masked_fill(masked, self.mask_token)
        h = self.encode(inputs)[masked]  # (N, D)
        # == F.cross_entropy(self._logits(h), seq[masked]) without materialising the (N, V) logits;
        # the output bias enters as an extra input dimension of constant 1.
        h1 = torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)  # (N, D + 1)
        w1 = torch.cat([self.item_emb.weight[1: self.n_items + 1], self.out_bias[1:, None]], dim=1)  # (V, D + 1)
        return linear_cross_entropy(h1, w1, seq[masked] - 1)

    def sequence_mask(self, batch: Batch) -> torch.Tensor:
        """``(B, L)`` real positions of the sequence ``loss(batch)`` encodes (masked items count as real)."""
        return batch["seq"][:, -self.max_len:] > 0

    def _with_mask_slot(self, seq: torch.Tensor) -> torch.Tensor:
        seq = seq[:, -(self.max_len - 1):]  # (B, L - 1): the most recent history
        slot = torch.full((seq.shape[0], 1), self.mask_token, dtype=seq.dtype, device=seq.device)
        return torch.cat([seq, slot], dim=1)  # (B, L)

    def item_embeddings(self) -> torch.Tensor:
        return self.item_emb.weight[: self.n_items + 1]  # (n_items + 1, D); row 0 = padding

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.encode(self._with_mask_slot(batch["seq"]))[:, -1]  # (B, D)

    def score(self, batch: Batch) -> torch.Tensor:
        return self._logits(self.user_representation(batch))  # (B, n_items + 1)
