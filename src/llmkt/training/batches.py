"""Batch sources: vectorised (numpy) batch building, shuffled by a per-epoch seeded generator."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
import torch

from llmkt.data.sequences import csr_items, padded_sequences

Batch = dict[str, torch.Tensor]


class SequenceBatches:
    """Training batches for sequential models: one window of ``max_len + 1`` training items per user.

    A batch is ``{"uid": (B,), "seq": (B, max_len + 1)}``; users with fewer than ``min_items`` training items
    are skipped. ``window="last"`` takes each user's most recent items; ``"random"`` a window ending at a random
    position (at least ``max_len + 1`` items in, so long histories are fully used over epochs). The order of users
    and the windows depend only on ``(seed, epoch)``, so a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, train: pd.DataFrame, n_users: int, max_len: int, batch_size: int, seed: int = 0,
                 min_items: int = 2, window: str = "last"):
        if window not in ("last", "random"):
            raise ValueError(f"training.window: expected 'last' or 'random', got {window!r}.")
        self.width, self.window = max_len + 1, window
        self.matrix = padded_sequences(train, n_users, max_len + 1)  # (n_users + 1, max_len + 1)
        self.indptr, self.items = csr_items(train, n_users)  # full histories, time order kept by the stable sort
        lengths = np.diff(self.indptr)
        self.users = np.flatnonzero(lengths >= min_items).astype(np.int64)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, epoch])
        order = self.users[rng.permutation(len(self.users))]
        for start in range(0, len(order), self.batch_size):
            uids = order[start:start + self.batch_size]
            seq = self.matrix[uids] if self.window == "last" else self._random_windows(uids, rng)
            yield {"uid": torch.from_numpy(uids), "seq": torch.from_numpy(seq)}

    def _random_windows(self, uids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        lengths = self.indptr[uids + 1] - self.indptr[uids]  # (B,)
        # window end (exclusive) in [min(n, width), n]
        lo = np.minimum(lengths, self.width)
        end = lo + (rng.random(len(uids)) * (lengths - lo + 1)).astype(np.int64)
        offsets = end[:, None] - self.width + np.arange(self.width)[None, :]  # (B, width); < 0 = padding
        idx = self.indptr[uids][:, None] + np.maximum(offsets, 0)
        return np.where(offsets >= 0, self.items[np.minimum(idx, len(self.items) - 1)], 0)


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


class UserRowBatches:
    """Training batches for user-row models (Mult-VAE ...): ``{"uid": (B,), "items": (B, n_items + 1)}`` multi-hot
    rows of each user's training items, users shuffled by ``(seed, epoch)``."""

    def __init__(self, train: pd.DataFrame, n_users: int, n_items: int, batch_size: int, seed: int = 0):
        self.indptr, self.items = csr_items(train, n_users)
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self.users = np.flatnonzero(np.diff(self.indptr) > 0).astype(np.int64)

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def rows(self, uids: np.ndarray) -> torch.Tensor:
        return user_rows(self.indptr, self.items, uids, self.n_items)

    def epoch(self, epoch: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, epoch])
        order = self.users[rng.permutation(len(self.users))]
        for start in range(0, len(order), self.batch_size):
            uids = order[start:start + self.batch_size]
            yield {"uid": torch.from_numpy(uids), "items": self.rows(uids)}


def user_rows(indptr: np.ndarray, items: np.ndarray, uids: np.ndarray, n_items: int) -> torch.Tensor:
    """Dense multi-hot ``(B, n_items + 1)`` rows for ``uids`` from a CSR incidence (vectorised)."""
    lens = indptr[uids + 1] - indptr[uids]
    rows = np.repeat(np.arange(len(uids)), lens)
    block_start = np.cumsum(lens) - lens  # where each user's entries begin in the flat output
    pos = np.arange(int(lens.sum())) - np.repeat(block_start, lens) + np.repeat(indptr[uids], lens)
    cols = items[pos]
    out = torch.zeros(len(uids), n_items + 1)
    out[torch.from_numpy(rows), torch.from_numpy(cols)] = 1.0
    return out


class UserRowScorer:
    """Scores users from their history rows: ``model.score({"uid", "items"})``."""

    def __init__(self, model: torch.nn.Module, history: pd.DataFrame, n_users: int, n_items: int,
                 device: torch.device | str = "cpu"):
        self.model, self.device, self.n_items = model, torch.device(device), n_items
        self.indptr, self.items = csr_items(history, n_users)

    def __call__(self, uids: np.ndarray) -> torch.Tensor:
        uids = np.asarray(uids, dtype=np.int64)
        batch = {"uid": torch.from_numpy(uids).to(self.device),
                 "items": user_rows(self.indptr, self.items, uids, self.n_items).to(self.device)}
        return self.model.score(batch).float().cpu()


class PairBatches:
    """Training batches for pairwise / pointwise CF models (BPR-MF, NeuMF, SimpleX).

    One row per training interaction: ``{"uid": (B,), "pos": (B,), "neg": (B, K)}`` and, when ``hist_len > 0``,
    ``"hist": (B, hist_len)`` the user's most recent training items (left-padded). Negatives are drawn uniformly
    from the items the user has no training interaction with (rejection sampling, vectorised). Order and negatives
    depend only on ``(seed, epoch)``.
    """

    def __init__(self, train: pd.DataFrame, n_users: int, n_items: int, batch_size: int, n_negatives: int = 1,
                 hist_len: int = 0, seed: int = 0):
        self.uids = train["uid"].to_numpy(np.int64, copy=True)
        self.iids = train["iid"].to_numpy(np.int64, copy=True)
        self.n_items, self.batch_size, self.k, self.seed = n_items, batch_size, n_negatives, seed
        self.known = np.unique(self.uids * (n_items + 1) + self.iids)  # sorted keys of training pairs
        self.hist = padded_sequences(train, n_users, hist_len) if hist_len > 0 else None

    def __len__(self) -> int:
        return (len(self.uids) + self.batch_size - 1) // self.batch_size

    def negatives(self, uids: np.ndarray, rng: np.random.Generator, tries: int = 50) -> np.ndarray:
        neg = rng.integers(1, self.n_items + 1, size=(len(uids), self.k))
        for _ in range(tries):
            keys = uids[:, None] * (self.n_items + 1) + neg
            pos = np.searchsorted(self.known, keys).clip(max=len(self.known) - 1)
            bad = self.known[pos] == keys
            if not bad.any():
                break
            neg[bad] = rng.integers(1, self.n_items + 1, size=int(bad.sum()))
        return neg

    def epoch(self, epoch: int) -> Iterator[Batch]:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.uids))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            u = self.uids[idx]
            batch = {"uid": torch.from_numpy(u), "pos": torch.from_numpy(self.iids[idx]),
                     "neg": torch.from_numpy(self.negatives(u, rng))}
            if self.hist is not None:
                batch["hist"] = torch.from_numpy(self.hist[u])
            yield batch


class PairScorer:
    """Scores users for pair models: ``model.score({"uid", "hist"?})``; ``hist`` from the stage's history."""

    def __init__(self, model: torch.nn.Module, history: pd.DataFrame, n_users: int, hist_len: int = 0,
                 device: torch.device | str = "cpu"):
        self.model, self.device = model, torch.device(device)
        self.hist = torch.from_numpy(padded_sequences(history, n_users, hist_len)) if hist_len > 0 else None

    def __call__(self, uids: np.ndarray) -> torch.Tensor:
        idx = torch.from_numpy(np.asarray(uids, dtype=np.int64))
        batch = {"uid": idx.to(self.device)}
        if self.hist is not None:
            batch["hist"] = self.hist[idx].to(self.device)
        return self.model.score(batch).float().cpu()


def click_labels(frame: pd.DataFrame, positive_rating: float) -> np.ndarray:
    """1 where ``rating >= positive_rating`` (a click), else 0; every row of ``frame`` becomes one example."""
    if "rating" not in frame.columns:
        raise ValueError("click-prediction models need ratings to derive labels; this dataset has none.")
    return (frame["rating"].to_numpy(np.float32) >= positive_rating).astype(np.float32)


class CTRBatches:
    """Training batches for click-prediction models: ``{"uid": (B,), "iid": (B,), "label": (B,)}``, one row per
    training interaction with ``label = rating >= positive_rating``, shuffled by ``(seed, epoch)``."""

    def __init__(self, train: pd.DataFrame, batch_size: int, positive_rating: float = 4.0, seed: int = 0):
        self.uids = train["uid"].to_numpy(np.int64, copy=True)
        self.iids = train["iid"].to_numpy(np.int64, copy=True)
        self.labels = click_labels(train, positive_rating)
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return (len(self.uids) + self.batch_size - 1) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[Batch]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.uids))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield {"uid": torch.from_numpy(self.uids[idx]), "iid": torch.from_numpy(self.iids[idx]),
                   "label": torch.from_numpy(self.labels[idx])}
