"""Pooling of a sequence layer's output ``(B, L, D)`` to one vector per user ``(B, D)``.

``mask`` is ``(B, L)``, True at real (non-padding) positions; sequences are left-padded, so position ``L - 1``
is the most recent item. Padding never contributes.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    w = mask.to(h.dtype)  # (B, L)
    return (h * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp_min(1.0)  # (B, D)


def recency_weights(mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """Weights ``gamma ** (distance from the most recent real item)``, normalised over real positions."""
    length = mask.shape[1]
    dist = torch.arange(length - 1, -1, -1, device=mask.device, dtype=torch.float32)  # (L,): 0 for the last slot
    w = gamma ** dist[None, :] * mask.float()  # (B, L)
    return w / w.sum(1, keepdim=True).clamp_min(1e-12)


def recency_pool(h: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    return (h * recency_weights(mask, gamma).to(h.dtype)[..., None]).sum(1)  # (B, D)


def last_position(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The state at the most recent real item (the last position for left-padded sequences)."""
    return h[:, -1]  # (B, D)


class AttentionPool(nn.Module):
    """Learnable attention pooling: ``softmax(h @ q / sqrt(D))`` over real positions."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = (h @ self.query) / h.shape[-1] ** 0.5  # (B, L)
        scores = scores.masked_fill(~mask, -torch.inf)
        w = torch.softmax(scores, dim=1).nan_to_num(0.0)  # rows without real items -> 0
        return (h * w[..., None]).sum(1)  # (B, D)
