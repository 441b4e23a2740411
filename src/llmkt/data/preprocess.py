"""Preprocessing of raw interaction tables: rating threshold, duplicates, iterative k-core."""

from __future__ import annotations

from typing import Literal

import pandas as pd

from llmkt.data import columns as C
from llmkt.errors import DataError

DuplicatePolicy = Literal["keep_first", "keep_last", "keep_all"]


def apply_rating_threshold(df: pd.DataFrame, min_rating: float | None) -> pd.DataFrame:
    """Keep interactions with ``rating >= min_rating`` (explicit to implicit feedback)."""
    if min_rating is None:
        return df
    if C.RATING not in df.columns:
        raise DataError(f"preprocessing.min_rating={min_rating} needs a {C.RATING!r} column, but the data has none "
                        f"(columns: {list(df.columns)}); set min_rating to null for implicit data.")
    if not pd.api.types.is_numeric_dtype(df[C.RATING]):
        bad = pd.to_numeric(df[C.RATING], errors="coerce").isna() & df[C.RATING].notna()
        first = df[C.RATING][bad].head(3).tolist()
        raise DataError(f"preprocessing.min_rating={min_rating}: the {C.RATING!r} column is not numeric "
                        f"({int(bad.sum())} value(s) like {first}); convert it to numbers first.")
    return df[df[C.RATING] >= min_rating]


def drop_duplicates(df: pd.DataFrame, policy: DuplicatePolicy) -> pd.DataFrame:
    """Drop repeated (user, item) pairs, keeping the first or last in time order, or keep all."""
    if policy == "keep_all":
        return df
    if policy not in ("keep_first", "keep_last"):
        raise DataError(f"preprocessing.duplicates: expected one of keep_first, keep_last, keep_all; got {policy!r}.")
    order = [c for c in (C.TIMESTAMP, C.ORDER) if c in df.columns]
    ordered = df.sort_values(order, kind="stable") if order else df
    keep = "first" if policy == "keep_first" else "last"
    return ordered.drop_duplicates([C.USER, C.ITEM], keep=keep).sort_index()


def k_core(df: pd.DataFrame, min_user: int = 0, min_item: int = 0, max_rounds: int = 100) -> pd.DataFrame:
    """Iteratively drop users with fewer than ``min_user`` and items with fewer than ``min_item`` interactions."""
    if min_user <= 1 and min_item <= 1:
        return df
    n_before = len(df)
    for _ in range(max_rounds):
        n = len(df)
        if min_item > 1:
            counts = df[C.ITEM].map(df[C.ITEM].value_counts())
            df = df[counts >= min_item]
        if min_user > 1:
            counts = df[C.USER].map(df[C.USER].value_counts())
            df = df[counts >= min_user]
        if len(df) == n:
            break
    if len(df) == 0:
        raise DataError(f"preprocessing: the {min_user}-core on users and {min_item}-core on items removed all "
                        f"{n_before} interactions; lower preprocessing.min_user_interactions / "
                        "min_item_interactions (or the rating threshold).")
    return df


def preprocess(df: pd.DataFrame, *, min_rating: float | None = None, duplicates: DuplicatePolicy = "keep_last",
               min_user_interactions: int = 0, min_item_interactions: int = 0) -> pd.DataFrame:
    """Rating threshold, then duplicate removal, then iterative k-core. Returns a new frame, row order kept."""
    n0 = len(df)
    if n0 == 0:
        raise DataError("preprocessing: the interactions table is empty; nothing to train on.")
    out = apply_rating_threshold(df, min_rating)
    if len(out) == 0:
        raise DataError(f"preprocessing: min_rating={min_rating} removed all {n0} interactions; lower it.")
    out = drop_duplicates(out, duplicates)
    out = k_core(out, min_user_interactions, min_item_interactions)
    return out.reset_index(drop=True)
