"""Text sides of stage 1: item titles as vectors, frozen (one table computed once) or fine-tuned (a
sentence-transformers model that runs on the batch's titles with gradients, as in the paper)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class FrozenText:
    """``table (n_items + 1, T)`` fixed title embeddings; calling it looks rows up."""

    def __init__(self, table: np.ndarray | torch.Tensor):
        self.table = torch.as_tensor(np.asarray(table, np.float32))
        self.dim = int(self.table.shape[1])

    def __call__(self, iid: torch.Tensor) -> torch.Tensor:
        return self.table[iid.cpu()]


class TunedText(nn.Module):
    """A sentence-transformers model fine-tuned on titles (``titles[iid]``); mean-pooled, unnormalised."""

    def __init__(self, st_model, titles: np.ndarray, max_length: int = 64):
        super().__init__()
        self.st = st_model
        self.titles = titles
        self.max_length = max_length
        # sentence-transformers >= 5.x renamed the method; older releases only have the first name
        dim_of = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
        self.dim = int(dim_of())

    def forward(self, iid: torch.Tensor) -> torch.Tensor:
        texts = [str(self.titles[int(i)]) for i in iid]
        dev = next(self.st.parameters()).device
        enc = self.st.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        return self.st({k: v.to(dev) for k, v in enc.items()})["sentence_embedding"]  # (N, T)

    @torch.no_grad()
    def table(self, n_items: int, batch: int = 256) -> np.ndarray:
        out = np.zeros((n_items + 1, self.dim), np.float32)
        ids = torch.arange(1, n_items + 1)
        for s in range(0, n_items, batch):
            out[1 + s:1 + s + batch] = self(ids[s:s + batch]).cpu().numpy()
        return out
