"""LightGCN (He et al., 2020): embeddings smoothed over the user-item graph of the training interactions.

Graph: the bipartite adjacency of the training pairs over ``N = (n_users + 1) + (n_items + 1)`` nodes (users first;
the padding rows 0 are isolated), normalised ``Â = D^-1/2 A D^-1/2`` (a node without edges keeps a zero row).
Propagation: ``E_0 = [user_emb; item_emb]`` (N, d), ``E_k = Â E_{k-1}``, final ``E = mean(E_0 .. E_K)`` (LightGCN's
``α_k = 1 / (K + 1)``). Batch (``kind = "pairs"``): ``{"uid": (B,), "pos": (B,), "neg": (B, K)}``. Loss: BPR on the
final embeddings, ``mean(softplus(s_neg - s_pos))``, plus ``reg * (|u_0|^2 + |p_0|^2 + mean_k |n_k,0|^2) / 2``
averaged over the batch on the layer-0 embeddings (the paper's regulariser). Score: ``E_u @ E_items.T``; in eval
mode the propagation is computed once and reused until the model trains again.

The graph comes from the split: ``set_graph(uid, iid)`` with the training pairs' internal ids (the runner calls it;
``needs_graph = True`` declares it).

Layer names: ``user_emb`` / ``item_emb`` (layer 0, the batch's rows) -> (B, d); ``user_out`` / ``item_out`` (the
final, propagated rows of the batch's users / positive items) -> (B, d). Default transfer layer: ``user_out``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.models.base import Batch, Recommender


def normalized_adjacency(uid: torch.Tensor, iid: torch.Tensor, n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the bipartite graph of the pairs ``(uid, iid)`` (internal ids, 1-based) as a sparse
    ``(N, N)`` COO tensor, ``N = n_users + 1 + n_items + 1``; user ``u`` is node ``u``, item ``i`` node
    ``n_users + 1 + i``. Repeated pairs count once."""
    n = n_users + 1 + n_items + 1
    pairs = torch.unique(torch.stack([uid.long(), iid.long()]), dim=1)  # (2, E)
    rows = torch.cat([pairs[0], n_users + 1 + pairs[1]])
    cols = torch.cat([n_users + 1 + pairs[1], pairs[0]])
    deg = torch.bincount(rows, minlength=n).float()  # (N,)
    inv = deg.pow(-0.5)
    inv[deg == 0] = 0.0
    vals = inv[rows] * inv[cols]
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (n, n), check_invariants=True).coalesce()


class LightGCN(Recommender):
    kind: ClassVar[str] = "pairs"
    needs_graph: ClassVar[bool] = True

    def __init__(self, n_items: int, n_users: int, dim: int = 64, n_layers: int = 3, reg: float = 1e-4,
                 n_negatives: int = 1):
        super().__init__()
        self.n_items, self.n_users, self.n_layers, self.reg = n_items, n_users, n_layers, reg
        self.n_negatives, self.hist_len = n_negatives, 0
        self.user_emb = nn.Embedding(n_users + 1, dim)
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        self.user_out = nn.Identity()  # (B, d): the propagated rows of the batch's users (a transfer target)
        self.item_out = nn.Identity()  # (B, d): the propagated rows of the batch's positive items
        self.register_buffer("adjacency", torch.sparse_coo_tensor(torch.zeros(2, 0, dtype=torch.long),
                                                                  torch.zeros(0), (1, 1), check_invariants=True),
                             persistent=False)
        self._has_graph = False
        self._cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def set_graph(self, uid: torch.Tensor, iid: torch.Tensor) -> None:
        """The training pairs (internal ids) the propagation runs over."""
        device = self.user_emb.weight.device
        self.adjacency = normalized_adjacency(uid.cpu(), iid.cpu(), self.n_users, self.n_items).to(device)
        self._has_graph, self._cache = True, None

    def train(self, mode: bool = True) -> "LightGCN":
        self._cache = None  # parameters may change: propagate again
        return super().train(mode)

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final user ``(n_users + 1, d)`` and item ``(n_items + 1, d)`` embeddings."""
        if not self._has_graph:
            raise RuntimeError("LightGCN needs its training graph: call set_graph(uid, iid) first (the runner does).")
        if not self.training and self._cache is not None:
            return self._cache
        e = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (N, d)
        total = e
        for _ in range(self.n_layers):
            e = torch.sparse.mm(self.adjacency, e)  # (N, d)
            total = total + e
        final = total / (self.n_layers + 1)
        users, items = final[: self.n_users + 1], final[self.n_users + 1:]
        if not self.training:
            self._cache = (users, items)
        return users, items

    def loss(self, batch: Batch) -> torch.Tensor:
        users, items = self.propagate()
        u = self.user_out(users[batch["uid"]])  # (B, d)
        p = self.item_out(items[batch["pos"]])  # (B, d)
        n = items[batch["neg"]]  # (B, K, d)
        s_pos = (u * p).sum(-1)  # (B,)
        s_neg = torch.einsum("bd,bkd->bk", u, n)  # (B, K)
        loss = F.softplus(s_neg - s_pos[:, None]).mean()
        u0 = self.user_emb(batch["uid"])  # (B, d) layer 0: the regulariser's rows (and a transfer target)
        p0, n0 = self.item_emb(batch["pos"]), self.item_emb(batch["neg"])
        if self.reg > 0:
            loss = loss + self.reg * 0.5 * (u0.pow(2).sum(-1) + p0.pow(2).sum(-1) + n0.pow(2).sum(-1).mean(-1)).mean()
        return loss

    def user_representation(self, batch: Batch) -> torch.Tensor:
        users, _ = self.propagate()
        self.user_emb(batch["uid"])  # layer-0 rows pass through their module (hooks on user_emb see them)
        return self.user_out(users[batch["uid"]])  # (B, d)

    def score(self, batch: Batch) -> torch.Tensor:
        _, items = self.propagate()
        s = self.user_representation(batch) @ items.T  # (B, n_items + 1)
        s[:, 0] = -torch.inf
        return s
