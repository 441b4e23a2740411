"""Transformer block shared by SASRec and BERT4Rec (pre-norm, ``scaled_dot_product_attention``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def attention_mask(valid: torch.Tensor, causal: bool, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive mask ``(B, 1, L, L)``: 0 where query i may attend to key j, -inf elsewhere.

    Padding keys are masked; every position may attend to itself so that rows of padding queries are never
    fully masked (which would give NaN). ``valid``: ``(B, L)`` True at real items.
    """
    b, length = valid.shape
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    allowed = valid[:, None, :] | eye[None]  # (B, L, L)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()[None]
    # built once per batch and shared by all blocks (a bool mask would be converted in every block)
    return torch.zeros(allowed.shape, dtype=dtype, device=valid.device).masked_fill_(~allowed, -torch.inf)[:, None]


class MultiHeadAttention(nn.Module):
    def __init__(self, hidden: int, n_heads: int, dropout: float):
        super().__init__()
        if hidden % n_heads:
            raise ValueError(f"model.hidden={hidden} must be divisible by model.n_heads={n_heads}.")
        self.n_heads = n_heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention of ``x`` (B, L, D); with ``kv``, queries from ``x`` and keys/values from ``kv``."""
        b, length, d = x.shape  # x: (B, L, D)
        if kv is None:
            q, k, v = self.qkv(x).view(b, length, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        else:
            w_q, w_kv = self.qkv.weight.split([d, 2 * d])
            b_q, b_kv = self.qkv.bias.split([d, 2 * d])
            q1 = F.linear(x, w_q, b_q).view(b, length, 1, self.n_heads, d // self.n_heads)
            kv2 = F.linear(kv, w_kv, b_kv).view(b, length, 2, self.n_heads, d // self.n_heads)
            q, k, v = torch.cat([q1, kv2], dim=2).permute(2, 0, 3, 1, 4)
        # q, k, v: (B, H, L, D/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, length, d))  # (B, L, D)


class FeedForward(nn.Module):
    def __init__(self, hidden: int, ff_hidden: int, dropout: float, activation: str = "relu"):
        super().__init__()
        self.fc1 = nn.Linear(hidden, ff_hidden)
        self.fc2 = nn.Linear(ff_hidden, hidden)
        self.act = nn.GELU() if activation == "gelu" else nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))  # (B, L, D)


class TransformerBlock(nn.Module):
    """``norm_first=True`` (pre-norm): ``x + Drop(Attn(LN(x)))`` then ``x + Drop(FFN(LN(x)))``.

    ``norm_first=False`` is the block of the SASRec reference code: ``q = LN(x)``; ``x = q + Drop(Attn(q, x, x))``
    (queries normalised, keys/values not); ``y = LN(x)``; ``x = y + Drop(FFN(y))``.
    """

    def __init__(self, hidden: int, n_heads: int, ff_hidden: int, dropout: float, activation: str = "relu",
                 norm_first: bool = True):
        super().__init__()
        self.norm_first = norm_first
        self.attn_norm = nn.LayerNorm(hidden)
        self.attn = MultiHeadAttention(hidden, n_heads, dropout)
        self.ffn_norm = nn.LayerNorm(hidden)
        self.ffn = FeedForward(hidden, ff_hidden, dropout, activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            x = x + self.dropout(self.attn(self.attn_norm(x), mask))
            return x + self.dropout(self.ffn(self.ffn_norm(x)))  # (B, L, D)
        q = self.attn_norm(x)
        x = q + self.dropout(self.attn(q, mask, kv=x))
        y = self.ffn_norm(x)
        return y + self.dropout(self.ffn(y))  # (B, L, D)
