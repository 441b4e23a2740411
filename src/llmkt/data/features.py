"""Categorical side features by internal id, for click-prediction models (DCN, DeepFM, KAR).

Item fields: ``decade`` (from ``year``) and, as one multi-valued field, ``genres``. User fields (when the dataset
has a users table): ``gender``, ``age`` (bucketed), ``occupation``. Code 0 means unknown / padding everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from llmkt.data import columns as C
from llmkt.data.dataset import Dataset

AGE_BUCKETS = (18, 25, 35, 45, 50, 56)  # MovieLens-1M's age groups; ml-100k ages are bucketed the same way


@dataclass
class FeatureTables:
    """``user_codes[uid]`` / ``item_codes[iid]``: one code per field; ``item_multi[iid]``: padded genre codes."""

    user_fields: list[str] = field(default_factory=list)
    user_codes: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), dtype=np.int64))
    user_cards: list[int] = field(default_factory=list)
    item_fields: list[str] = field(default_factory=list)
    item_codes: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), dtype=np.int64))
    item_cards: list[int] = field(default_factory=list)
    multi_field: str | None = None
    item_multi: np.ndarray = field(default_factory=lambda: np.zeros((1, 0), dtype=np.int64))
    multi_card: int = 1

    @property
    def n_fields(self) -> int:
        """Single-valued side fields plus the multi-valued one (user and item ids not counted)."""
        return len(self.user_fields) + len(self.item_fields) + (1 if self.multi_field else 0)


def _column(values: pd.Series, ids: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Codes ``1..K`` of ``values`` (0 = missing) placed at rows ``ids`` of an ``(n,)`` column; and ``K + 1``."""
    codes, uniques = pd.factorize(values, sort=True)  # -1 for missing
    col = np.zeros(n, dtype=np.int64)
    col[ids] = codes + 1
    return col, len(uniques) + 1


def _stack(cols: list[np.ndarray], n: int) -> np.ndarray:
    return np.stack(cols, 1) if cols else np.zeros((n, 0), dtype=np.int64)


def _genres(items: pd.DataFrame, n: int) -> tuple[np.ndarray, int]:
    lists = items["genres"].fillna("").astype(str).str.split("|")
    index = {g: i + 1 for i, g in enumerate(sorted({g for gs in lists for g in gs if g}))}
    multi = np.zeros((n, max(1, max((len(gs) for gs in lists), default=1))), dtype=np.int64)
    for iid, gs in zip(items[C.IID].to_numpy(), lists):
        codes = [index[g] for g in gs if g]
        multi[iid, :len(codes)] = codes
    return multi, len(index) + 1


def build_features(ds: Dataset) -> FeatureTables:
    ft = FeatureTables()
    n_i, n_u = ds.n_items + 1, ds.n_users + 1
    cols: list[np.ndarray] = []
    ft.item_multi = np.zeros((n_i, 0), dtype=np.int64)
    if ds.items is not None:
        items = ds.items
        if "year" in items.columns:
            col, card = _column(pd.to_numeric(items["year"], errors="coerce") // 10 * 10, items[C.IID].to_numpy(), n_i)
            ft.item_fields.append("decade")
            ft.item_cards.append(card)
            cols.append(col)
        if "genres" in items.columns:
            ft.item_multi, ft.multi_card = _genres(items, n_i)
            ft.multi_field = "genres"
    ft.item_codes = _stack(cols, n_i)
    cols = []
    if ds.users is not None:
        users = ds.users
        for name in ("gender", "age", "occupation"):
            if name not in users.columns:
                continue
            values = users[name]
            if name == "age":
                values = pd.Series(np.searchsorted(AGE_BUCKETS, pd.to_numeric(values, errors="coerce"),
                                                   side="right"), index=users.index)
            col, card = _column(values, users[C.UID].to_numpy(), n_u)
            ft.user_fields.append(name)
            ft.user_cards.append(card)
            cols.append(col)
    ft.user_codes = _stack(cols, n_u)
    return ft


def genre_vocab(ds: Dataset) -> list[str]:
    """The dataset's genres sorted by name: the columns of :func:`genre_histograms` (one list everywhere)."""
    if ds.items is None or "genres" not in ds.items.columns:
        raise ValueError(f"dataset {ds.name!r} has no item genres")
    return sorted({g for gs in ds.items["genres"].fillna("").astype(str) for g in gs.split("|") if g})


def genre_histograms(ds: Dataset, frame: pd.DataFrame) -> np.ndarray:
    """``(n_users + 1, n_genres)`` float32: per internal user id, the normalised genre histogram of ``frame``'s
    items (columns in :func:`genre_vocab` order; a user without rows in ``frame`` gets zeros). The no-LLM
    reference the vector probes and the leak-by-design diagnostics are built from."""
    vocab = {g: i for i, g in enumerate(genre_vocab(ds))}
    onehot = np.zeros((ds.n_items + 1, len(vocab)), dtype=np.float32)
    for iid, gs in zip(ds.items[C.IID].to_numpy(), ds.items["genres"].fillna("").astype(str)):
        for g in gs.split("|"):
            if g:
                onehot[iid, vocab[g]] = 1.0
    hist = np.zeros((ds.n_users + 1, len(vocab)), dtype=np.float32)
    np.add.at(hist, frame[C.UID].to_numpy(), onehot[frame[C.IID].to_numpy()])
    return hist / np.maximum(hist.sum(1, keepdims=True), 1.0)
