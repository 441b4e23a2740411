"""`Dataset`: interactions, item and user tables with external ids at the boundary, internal ids inside."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd

from llmkt.data import columns as C
from llmkt.errors import DataError


class IdMap:
    """Bijection between external ids and dense internal ids ``1..N`` (``0`` is padding).

    >>> m = IdMap(["b", "a"])
    >>> m.to_internal(["a", "b"]).tolist()
    [2, 1]
    >>> m.to_external([1]).tolist()
    ['b']
    """

    def __init__(self, external_ids: Iterable[Any]):
        ext = pd.Index(pd.unique(pd.Series(list(external_ids) if not isinstance(external_ids, (pd.Series, np.ndarray, pd.Index)) else external_ids)))
        if ext.hasnans:
            raise DataError("IdMap: external ids contain NaN; drop or fill them before building a dataset.")
        self._index = ext

    @property
    def external_ids(self) -> np.ndarray:
        """External ids in internal order: ``external_ids[i]`` has internal id ``i + 1``."""
        return self._index.to_numpy()

    def __len__(self) -> int:
        return len(self._index)

    def to_internal(self, external: Iterable[Any], *, unknown: str = "raise") -> np.ndarray:
        """Internal ids of ``external``; ``unknown='raise'`` fails on ids never seen, ``'zero'`` maps them to 0."""
        ext = external if isinstance(external, (pd.Series, np.ndarray, pd.Index)) else list(external)
        pos = self._index.get_indexer(ext)
        if (pos < 0).any():
            if unknown == "raise":
                missing = pd.Series(np.asarray(ext, dtype=object)[pos < 0]).unique()[:5].tolist()
                raise DataError(f"IdMap: {int((pos < 0).sum())} ids are unknown, e.g. {missing}. "
                                "Only ids present in the dataset's interactions have internal ids.")
            return np.where(pos < 0, 0, pos + 1).astype(np.int64)
        return (pos + 1).astype(np.int64)

    def to_external(self, internal: Iterable[int]) -> np.ndarray:
        idx = np.asarray(internal, dtype=np.int64)
        if idx.size and (idx.min() < 1 or idx.max() > len(self)):
            raise DataError(f"IdMap: internal ids must be in 1..{len(self)} (0 is padding); got {idx.min()}..{idx.max()}.")
        return self._index.to_numpy()[idx - 1]


def _check_frame(df: pd.DataFrame, name: str, required: Iterable[str]) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{name}: expected a pandas DataFrame, got {type(df).__name__}.")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(f"{name}: missing column(s) {missing}; present: {list(df.columns)}. "
                        f"Rename your columns to llmkt's names (llmkt.data.columns: {C.USER!r}, {C.ITEM!r}, "
                        f"{C.TIMESTAMP!r}, {C.RATING!r}).")
    for col in required:
        n_nan = int(df[col].isna().sum())
        if n_nan:
            raise DataError(f"{name}: column {col!r} has {n_nan} NaN value(s) (first at row "
                            f"{df.index[df[col].isna()][0]!r}); drop or fill them before building a dataset.")


@dataclass
class Dataset:
    """Interactions plus optional item and user tables.

    ``interactions`` always holds ``user_id, item_id, timestamp, order, uid, iid`` (and ``rating`` when known),
    sorted by ``uid``, then ``timestamp``, then ``order`` (the stable tie order). ``items`` and ``users`` are
    restricted to ids that occur in interactions and carry ``iid``/``uid`` columns.
    """

    interactions: pd.DataFrame
    user_map: IdMap
    item_map: IdMap
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    name: str = "custom"
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_frames(cls, interactions: pd.DataFrame, items: pd.DataFrame | None = None,
                    users: pd.DataFrame | None = None, name: str = "custom") -> "Dataset":
        """Validate frames and assign internal ids.

        Time order comes from ``timestamp`` if present, else from ``order``, else from row order.
        """
        _check_frame(interactions, "interactions", C.REQUIRED_INTERACTION_COLUMNS)
        if len(interactions) == 0:
            raise DataError("interactions: the table is empty; nothing to train on.")
        df = interactions.copy()
        if C.ORDER not in df.columns:
            df[C.ORDER] = np.arange(len(df), dtype=np.int64)
        if C.TIMESTAMP not in df.columns:
            df[C.TIMESTAMP] = df[C.ORDER].astype(np.int64)
        if df[C.TIMESTAMP].isna().any():
            raise DataError(f"interactions: column {C.TIMESTAMP!r} has {int(df[C.TIMESTAMP].isna().sum())} NaN "
                            "value(s); fill them or drop the column to use row order.")
        if C.RATING in df.columns and df[C.RATING].isna().any():
            raise DataError(f"interactions: column {C.RATING!r} has NaN values; fill or drop them.")
        # Internal ids follow first appearance in time order, which makes them deterministic for a given file.
        df = df.sort_values([C.TIMESTAMP, C.ORDER], kind="stable")
        user_map = IdMap(df[C.USER])
        item_map = IdMap(df[C.ITEM])
        df[C.UID] = user_map.to_internal(df[C.USER])
        df[C.IID] = item_map.to_internal(df[C.ITEM])
        df = df.sort_values([C.UID, C.TIMESTAMP, C.ORDER], kind="stable").reset_index(drop=True)

        if items is not None:
            _check_frame(items, "items", [C.ITEM])
            items = items.drop_duplicates(C.ITEM, keep="first").copy()
            items[C.IID] = item_map.to_internal(items[C.ITEM], unknown="zero")
            items = items[items[C.IID] > 0].sort_values(C.IID).reset_index(drop=True)
        if users is not None:
            _check_frame(users, "users", [C.USER])
            users = users.drop_duplicates(C.USER, keep="first").copy()
            users[C.UID] = user_map.to_internal(users[C.USER], unknown="zero")
            users = users[users[C.UID] > 0].sort_values(C.UID).reset_index(drop=True)
        return cls(interactions=df, user_map=user_map, item_map=item_map, items=items, users=users, name=name)

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def __len__(self) -> int:
        return len(self.interactions)

    def summary(self) -> dict[str, Any]:
        n = len(self.interactions)
        return {"name": self.name, "users": self.n_users, "items": self.n_items, "interactions": n,
                "density": n / max(1, self.n_users * self.n_items),
                "mean_history": n / max(1, self.n_users)}

    def __repr__(self) -> str:
        s = self.summary()
        return f"Dataset({s['name']!r}: {s['users']} users, {s['items']} items, {s['interactions']} interactions)"
