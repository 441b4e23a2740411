"""Stage 1 of A-LLMRec: align a frozen CF model's item embeddings with the items' text embeddings.

An item encoder/decoder (CF space <-> latent) and a text encoder/decoder (text space <-> latent) are trained with

    L = L_matching + alpha * L_item_recon + beta * L_text_recon + L_rec

on the last item of each user's training sequence (the positive) and one sampled unseen negative:

* ``L_matching``: MSE between the item latent and the text latent of the same item (positive and negative);
* ``L_item_recon`` / ``L_text_recon``: MSE between an embedding and its decoded latent (keeps the latents from
  collapsing; the text target is detached, so a fine-tuned encoder cannot shrink its own target);
* ``L_rec``: BCE of the mean over the CF width of the frozen user representation times the decoded item embeddings
  of positive and negative (the latent stays useful for recommendation).

Defaults alpha = 0.5, beta = 0.2 are the values of the authors' public code (its beta is hard-coded there); the CF
model never trains (its parameters are frozen and :meth:`ItemTextAlignment.state_hash` lets a test prove it).
"""

from __future__ import annotations

import hashlib
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llmkt.models.base import Batch, Recommender

TextFn = Callable[[torch.Tensor], torch.Tensor]  # internal item ids (N,) -> text embeddings (N, T)


def state_hash(module: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes) of ``module``."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def freeze(module: nn.Module) -> nn.Module:
    """``module`` in eval mode with ``requires_grad=False`` everywhere."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class Autoencoder(nn.Module):
    """``Linear -> Sigmoid`` into the latent, ``Linear`` back (the authors' one-hidden-layer MLP)."""

    def __init__(self, dim: int, latent: int):
        super().__init__()
        self.enc = nn.Linear(dim, latent)
        self.dec = nn.Linear(latent, dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.enc(x))  # (N, latent)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encode(x)
        return z, self.dec(z)  # (N, latent), (N, dim)


class ItemTextAlignment(nn.Module):
    """The trainable part of stage 1 (``item``, ``text``: :class:`Autoencoder`), plus an optional trainable text
    encoder registered as ``text_encoder`` (fine-tuning) so that its weights are saved with the alignment."""

    def __init__(self, cf_dim: int, text_dim: int, latent: int = 128, text_encoder: nn.Module | None = None):
        super().__init__()
        self.cf_dim, self.text_dim, self.latent = cf_dim, text_dim, latent
        self.item = Autoencoder(cf_dim, latent)
        self.text = Autoencoder(text_dim, latent)
        self.text_encoder = text_encoder

    def losses(self, cf_model: Recommender, text_fn: TextFn, batch: Batch, alpha: float = 0.5,
               beta: float = 0.2) -> dict[str, torch.Tensor]:
        """The four terms and ``total`` for ``batch`` = ``seq (B, L)`` history before the positive, ``pos (B,)``,
        ``neg (B,)``. As in the authors' code: matching and both reconstructions are summed over positive and
        negative, the text reconstruction's target is detached, the logits are means over the CF width."""
        table = cf_model.item_embeddings()
        with torch.no_grad():
            user = cf_model.user_representation({"seq": batch["seq"], "uid": batch.get("uid")})  # (B, D)
        match = item_recon = text_recon = 0.0
        logits = []
        for key in ("pos", "neg"):
            with torch.no_grad():
                e = table[batch[key]]  # (B, D)
            t = text_fn(batch[key]).to(e.device)  # (B, T)
            z, rec = self.item(e)  # (B, latent), (B, D)
            zt, trec = self.text(t)
            match = match + F.mse_loss(z, zt)
            item_recon = item_recon + F.mse_loss(rec, e)
            text_recon = text_recon + F.mse_loss(trec, t.detach())
            logits.append((user * rec).mean(-1))  # (B,)
        rec_loss = (F.binary_cross_entropy_with_logits(logits[0], torch.ones_like(logits[0]))
                    + F.binary_cross_entropy_with_logits(logits[1], torch.zeros_like(logits[1])))
        total = match + alpha * item_recon + beta * text_recon + rec_loss
        return {"total": total, "matching": match, "item_recon": item_recon, "text_recon": text_recon,
                "rec": rec_loss}

    @torch.no_grad()
    def item_latents(self, cf_model: Recommender) -> torch.Tensor:
        """``(n_items + 1, latent)`` the joint collaborative-text item embeddings stage 2 projects (row 0 zero)."""
        z = self.item.encode(cf_model.item_embeddings().detach())
        z[0] = 0
        return z


def stage1_step(align: ItemTextAlignment, cf_model: Recommender, text_fn: TextFn, batch: Batch,
                optimizer: torch.optim.Optimizer, alpha: float = 0.5, beta: float = 0.2) -> dict[str, float]:
    """One optimisation step of stage 1; returns the loss terms as floats."""
    align.train()
    optimizer.zero_grad(set_to_none=True)
    terms = align.losses(cf_model, text_fn, batch, alpha, beta)
    terms["total"].backward()
    optimizer.step()
    return {k: float(v.detach()) for k, v in terms.items()}
