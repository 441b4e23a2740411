"""Batch sources: vectorised (numpy) batch building, shuffled by a per-epoch seeded generator."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from llmkt.data.sequences import padded_sequences

Batch = dict[str, torch.Tensor]


class SequenceBatches:
    """Training batches for sequential models: each user's last ``max_len + 1`` training items.

    A batch is ``{"uid": (B,), "seq": (B, max_len + 1)}``; users with fewer than ``min_items`` training items
    are skipped. The order of users in an epoch depends only on ``(seed, epoch)``, so a resumed run sees the
    same batches as an uninterrupted one.
    """

    def __init__(self, train: pd.DataFrame, n_users: int, max_len: int, batch_size: int, seed: int = 0,
                 min_items: int = 2):
        self.matrix = padded_sequences(train, n_users, max_len + 1)  # (n_users + 1, max_len + 1)
        lengths = (self.matrix > 0).sum(1)
        self.users = np.flatnonzero(lengths >= min_items).astype(np.int64)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, epoch])
        order = self.users[rng.permutation(len(self.users))]
        for start in range(0, len(order), self.batch_size):
            uids = order[start:start + self.batch_size]
            yield {"uid": torch.from_numpy(uids), "seq": torch.from_numpy(self.matrix[uids])}


class SequenceScorer:
    """Scores users from their history: builds ``{"uid", "seq": (B, max_len)}`` and calls ``model.score``."""

    def __init__(self, model: torch.nn.Module, history: pd.DataFrame, n_users: int, max_len: int,
                 device: torch.device | str = "cpu"):
        self.model, self.device = model, torch.device(device)
        self.matrix = torch.from_numpy(padded_sequences(history, n_users, max_len))  # (n_users + 1, max_len)

    def __call__(self, uids: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(np.asarray(uids, dtype=np.int64))
        batch = {"uid": idx.to(self.device), "seq": self.matrix[idx].to(self.device)}
        return self.model.score(batch).float().cpu()
