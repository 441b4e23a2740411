"""Map a pooled layer output ``(B, W)`` onto the profile-vector space ``(B, d)``, and the transfer losses.

* ``fixed``: the vectors were reduced to the layer's width (``d == W``); identity.
* ``slice``: the first ``d`` of ``W`` dimensions (LLM-KT's option; ``d <= W``).
* ``projection``: a learnable map ``W -> d`` with orthonormal rows (``torch.nn.utils.parametrizations.
  orthogonal``). It may rotate but cannot shrink, scale or collapse, so the reconstruction has to come from the
  layer's content; a free linear map (or a trainable target) would let the loss be met by the adapter alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations

from llmkt.errors import ConfigError


class Alignment(nn.Module):
    def __init__(self, kind: str, width: int, dim: int):
        super().__init__()
        self.kind, self.width, self.dim = kind, width, dim
        self.proj: nn.Module | None = None
        if kind == "fixed":
            if dim != width:
                raise ConfigError(f"transfer.alignment='fixed' needs vectors of the layer's width {width}, got {dim}; "
                                  "reduce to that width, or use alignment 'slice' or 'projection'.")
        elif kind == "slice":
            if dim > width:
                raise ConfigError(f"transfer.alignment='slice': vector width {dim} exceeds the layer width {width}.")
        elif kind == "projection":
            lin = nn.Linear(width, dim, bias=False)
            self.proj = parametrizations.orthogonal(lin)
        else:
            raise ConfigError(f"transfer.alignment: expected fixed, slice or projection; got {kind!r}.")

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.kind == "fixed":
            return h
        if self.kind == "slice":
            return h[:, : self.dim]
        return self.proj(h)


def per_user_loss(z: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``(B,)`` loss per user; ``rmse`` and ``mse`` average over dimensions (rmse takes the root later)."""
    if kind in ("mse", "rmse"):
        return ((z - target) ** 2).mean(1)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(z, target, dim=1, eps=1e-8)
    raise ConfigError(f"transfer.loss: expected rmse, mse, cosine, infonce or relational; got {kind!r}.")


def reduce_loss(per_user: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean over users with a vector (``mask``); users without one contribute exactly zero."""
    w = mask.to(per_user.dtype)
    n = w.sum()
    mean = (per_user * w).sum() / n.clamp_min(1.0)
    if kind == "rmse":
        return torch.sqrt(mean + 1e-12) * (n > 0)
    return mean


#: losses over the batch as a whole (the others are per row)
BATCH_LOSSES = ("infonce", "relational")


def _first_rows(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Indices of the first row of each distinct id among the rows with a vector (a user may fill several rows of
    a pair batch; as its own negative it would be a false one)."""
    rows = torch.nonzero(mask).reshape(-1)
    if len(rows) == 0:
        return rows
    uniq, inverse = torch.unique(ids[rows], return_inverse=True)
    first = torch.full((len(uniq),), len(rows), dtype=torch.long, device=rows.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(rows), device=rows.device), reduce="amin")
    return rows[first]


def batch_loss(z: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, ids: torch.Tensor, kind: str,
               temperature: float = 0.1, max_rows: int | None = None) -> torch.Tensor:
    """The transfer loss of a batch: ``z`` (B, d) aligned layer rows, ``target`` (B, d) their vectors, ``mask`` (B,)
    rows with a vector, ``ids`` (B,) whose rows they are.

    * ``rmse`` / ``mse`` / ``cosine``: per row, averaged over rows with a vector (:func:`reduce_loss`).
    * ``infonce``: contrastive alignment with in-batch negatives (RLMRec-Con's idea): cosine similarities of every
      distinct row to every target over ``temperature``, cross-entropy towards its own target, both directions
      averaged. Zero with fewer than two distinct rows.
    * ``relational``: the structure, not the coordinates: mean squared difference between the rows' pairwise
      cosine similarities and their targets' (off the diagonal). Zero with fewer than two distinct rows.

    The batch losses cost O(R²) in the R distinct rows; ``max_rows`` keeps a random sample of at most that many
    (torch's generator, so seeded with the run).
    """
    if kind not in BATCH_LOSSES:
        return reduce_loss(per_user_loss(z, target, kind), mask, kind)
    rows = _first_rows(ids, mask)
    if max_rows is not None and len(rows) > max_rows:
        rows = rows[torch.randperm(len(rows), device=rows.device)[:max_rows].sort().values]
    if len(rows) < 2:
        return z.sum() * 0.0
    a, b = F.normalize(z[rows], dim=1), F.normalize(target[rows], dim=1)
    if kind == "infonce":
        logits = a @ b.T / temperature  # (R, R)
        labels = torch.arange(len(rows), device=z.device)
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    off = ~torch.eye(len(rows), dtype=torch.bool, device=z.device)
    return ((a @ a.T - b @ b.T)[off] ** 2).mean()
