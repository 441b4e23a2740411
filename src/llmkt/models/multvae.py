"""Mult-VAE (Liang et al., 2018): a variational autoencoder over each user's item set, multinomial likelihood.

Batch: ``{"uid": (B,), "items": (B, n_items + 1)}`` multi-hot training items (column 0 = padding, always 0).
Loss: ``-sum(log_softmax(logits) * x) + beta * KL``, with ``beta`` annealed linearly to ``anneal_cap`` over
``anneal_steps`` optimisation steps. Scoring uses the mean ``mu`` (no sampling).

Layer names: ``input_dropout``, ``encoder`` (``encoder.0`` Linear, ``encoder.1`` Tanh) -> (B, hidden), ``mu``,
``logvar`` -> (B, latent), ``decoder`` -> (B, n_items + 1). Default transfer layer: ``mu`` (the encoder output).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.models.base import Batch, Recommender


class MultVAE(Recommender):
    kind: ClassVar[str] = "user_rows"
    loss_sums_over_items: ClassVar[bool] = True  # -sum_i x_i log softmax(z)_i + beta * KL: ~430 on ml-100k

    #: below this share of non-zeros the encoder reads the input as a sparse tensor (same values and gradients;
    #: the dense product over all items was ~40 % of a step's arithmetic; measured ~25 % faster on amazon-book)
    SPARSE_BELOW: ClassVar[float] = 0.05

    def __init__(self, n_items: int, hidden: int = 600, latent: int = 200, dropout: float = 0.5,
                 anneal_cap: float = 0.2, anneal_steps: int = 20000, sparse_input: bool = True):
        super().__init__()
        self.n_items, self.anneal_cap, self.anneal_steps = n_items, anneal_cap, anneal_steps
        self.sparse_input = sparse_input
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = nn.Sequential(nn.Linear(n_items + 1, hidden), nn.Tanh())
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.Tanh(), nn.Linear(hidden, n_items + 1))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.normal_(m.bias, std=0.001)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_dropout(F.normalize(x, dim=1))  # (B, V)
        if self.sparse_input and x.layout == torch.strided and x.count_nonzero() < self.SPARSE_BELOW * x.numel():
            x = x.to_sparse()  # encoder.0 reads a sparse (B, V): its hooks see a sparse input
        h = self.encoder(x)  # (B, hidden)
        return self.mu(h), self.logvar(h)  # (B, latent) each

    def loss(self, batch: Batch) -> torch.Tensor:
        x = batch["items"]  # (B, V)
        mu, logvar = self._encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        logits = self.decoder(z)  # (B, V)
        logits[:, 0] = -torch.inf
        nll = -(torch.log_softmax(logits, 1)[:, 1:] * x[:, 1:]).sum(1).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        beta = min(self.anneal_cap, float(self.steps) / max(self.anneal_steps, 1))
        if self.training:
            self.steps += 1
        return nll + beta * kl

    def user_representation(self, batch: Batch) -> torch.Tensor:
        return self._encode(batch["items"])[0]  # (B, latent)

    def score(self, batch: Batch) -> torch.Tensor:
        logits = self.decoder(self.user_representation(batch))  # (B, V)
        logits[:, 0] = -torch.inf
        return logits
