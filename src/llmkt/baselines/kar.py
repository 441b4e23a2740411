"""KAR (Xi et al., 2023, "Towards Open-World Recommendation with Knowledge Augmentation from Large Language
Models"): LLM knowledge enters a click-prediction backbone as extra input fields.

Each knowledge type (user preference knowledge, item factual knowledge) is a dense vector from a text encoder.
A hybrid-expert adaptor turns it into an augmented vector of the backbone's embedding width: experts shared by
all knowledge types plus experts specific to each type, mixed by a softmax gate per type computed from that
type's knowledge vector. The two augmented vectors join the backbone's field embeddings (``n_extra_fields=2``).

Experts are bias-free MLPs (``Linear -> ReLU -> Linear``, no biases), so a zero knowledge vector gives a zero
augmented vector and the model reduces exactly to its backbone: users or items without knowledge fall back to the
plain model, and the ablation "KAR without knowledge" is the backbone itself.
"""

from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.models.base import Batch, Recommender
from llmkt.models.ctr import CTRModel, score_rows


def expert(d_in: int, hidden: int, d_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden, bias=False), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, d_out, bias=False))


class HybridExpertAdaptor(nn.Module):
    """``{type: (B, d_type)}`` -> ``{type: (B, d_out)}``; ``gates[type]`` holds the last ``(B, n_shared +
    n_specific)`` softmax weights (shared experts first)."""

    def __init__(self, dims: dict[str, int], d_out: int, n_shared: int = 2, n_specific: int = 2,
                 hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        if len(set(dims.values())) != 1:
            raise ValueError(f"KAR: shared experts need knowledge vectors of one width, got {dims}; encode user and "
                             "item knowledge with the same encoder (or reduce them to one width).")
        d_in = next(iter(dims.values()))
        self.types = list(dims)
        self.shared = nn.ModuleList(expert(d_in, hidden, d_out, dropout) for _ in range(n_shared))
        self.specific = nn.ModuleDict({t: nn.ModuleList(expert(d_in, hidden, d_out, dropout)
                                                        for _ in range(n_specific)) for t in self.types})
        self.gate = nn.ModuleDict({t: nn.Linear(d_in, n_shared + n_specific) for t in self.types})
        self.gates: dict[str, torch.Tensor] = {}

    def forward(self, knowledge: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {}
        for t in self.types:
            x = knowledge[t]  # (B, d_in)
            experts = torch.stack([e(x) for e in [*self.shared, *self.specific[t]]], 1)  # (B, E, d_out)
            g = F.softmax(self.gate[t](x), dim=-1)  # (B, E)
            self.gates[t] = g.detach()
            out[t] = (g.unsqueeze(-1) * experts).sum(1)  # (B, d_out)
        return out


class KAR(Recommender):
    """A click-prediction backbone (built with ``n_extra_fields=2``) plus the adaptor over user and item knowledge.

    ``user_knowledge``: ``(n_users + 1, d)``, ``item_knowledge``: ``(n_items + 1, d)``, rows by internal id (zero
    rows for ids without knowledge). Layer names: ``backbone.*`` (the backbone's own), ``adaptor``.
    """

    kind: ClassVar[str] = "ctr"

    def __init__(self, backbone: CTRModel, user_knowledge: torch.Tensor, item_knowledge: torch.Tensor,
                 n_shared: int = 2, n_specific: int = 2, expert_hidden: int = 128, dropout: float = 0.0):
        super().__init__()
        if backbone.n_extra_fields != 2:
            raise ValueError("KAR: build the backbone with n_extra_fields=2 (user and item knowledge fields).")
        self.backbone = backbone
        self.n_items, self.n_users = backbone.n_items, backbone.n_users
        self.register_buffer("user_knowledge", torch.as_tensor(user_knowledge, dtype=torch.float32))
        self.register_buffer("item_knowledge", torch.as_tensor(item_knowledge, dtype=torch.float32))
        self.adaptor = HybridExpertAdaptor({"user": self.user_knowledge.shape[1], "item": self.item_knowledge.shape[1]},
                                           backbone.embed_dim, n_shared, n_specific, expert_hidden, dropout)

    def logits(self, batch: Batch, extra: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        aug = self.adaptor({"user": self.user_knowledge[batch["uid"]], "item": self.item_knowledge[batch["iid"]]})
        return self.backbone.logits(batch, [aug["user"], aug["item"]])

    def loss(self, batch: Batch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self.logits(batch), batch["label"].float())

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self.backbone.user_representation(batch)

    def score(self, batch: Batch) -> torch.Tensor:
        return score_rows(self.logits, batch["uid"], self.n_items, self.backbone.score_chunk)
