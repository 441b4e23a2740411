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


def _codes(values: pd.Series) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(values, sort=True)  # -1 for missing
    return (codes + 1).astype(np.int64), len(uniques) + 1


def build_features(ds: Dataset) -> FeatureTables:
    ft = FeatureTables()
    if ds.items is not None:
        items = ds.items
        n = ds.n_items + 1
        cols, cards = [], []
        if "year" in items.columns:
            decade = (pd.to_numeric(items["year"], errors="coerce") // 10 * 10)
            codes, card = _codes(decade)
            col = np.zeros(n, dtype=np.int64)
            col[items[C.IID].to_numpy()] = codes
            ft.item_fields.append("decade")
            cols.append(col)
            cards.append(card)
        if cols:
            ft.item_codes, ft.item_cards = np.stack(cols, 1), cards
        else:
            ft.item_codes = np.zeros((n, 0), dtype=np.int64)
        if "genres" in items.columns:
            lists = items["genres"].fillna("").astype(str).str.split("|")
            vocab = sorted({g for gs in lists for g in gs if g})
            index = {g: i + 1 for i, g in enumerate(vocab)}
            width = max(1, max((len(gs) for gs in lists), default=1))
            multi = np.zeros((n, width), dtype=np.int64)
            for iid, gs in zip(items[C.IID].to_numpy(), lists):
                codes = [index[g] for g in gs if g]
                multi[iid, :len(codes)] = codes
            ft.multi_field, ft.item_multi, ft.multi_card = "genres", multi, len(vocab) + 1
        else:
            ft.item_multi = np.zeros((n, 0), dtype=np.int64)
    else:
        ft.item_codes = np.zeros((ds.n_items + 1, 0), dtype=np.int64)
        ft.item_multi = np.zeros((ds.n_items + 1, 0), dtype=np.int64)
    if ds.users is not None:
        users = ds.users
        n = ds.n_users + 1
        cols, cards = [], []
        for name in ("gender", "age", "occupation"):
            if name not in users.columns:
                continue
            values = users[name]
            if name == "age":
                values = pd.Series(np.searchsorted(AGE_BUCKETS, pd.to_numeric(values, errors="coerce"),
                                                   side="right"), index=users.index)
            codes, card = _codes(values)
            col = np.zeros(n, dtype=np.int64)
            col[users[C.UID].to_numpy()] = codes
            ft.user_fields.append(name)
            cols.append(col)
            cards.append(card)
        if cols:
            ft.user_codes, ft.user_cards = np.stack(cols, 1), cards
        else:
            ft.user_codes = np.zeros((n, 0), dtype=np.int64)
    else:
        ft.user_codes = np.zeros((ds.n_users + 1, 0), dtype=np.int64)
    return ft
