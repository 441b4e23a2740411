"""Vectorised construction of padded sequences (no per-user Python loops)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmkt.data import columns as C


def padded_sequences(df: pd.DataFrame, n_users: int, max_len: int) -> np.ndarray:
    """Last ``max_len`` items of each user, left-padded with 0.

    ``df`` must be sorted by uid then time (as ``Dataset`` and ``Split`` frames are). Returns an int64 array
    of shape ``(n_users + 1, max_len)``; row ``u`` holds user ``u``'s sequence (row 0 is all padding).
    """
    uid = df[C.UID].to_numpy(np.int64)
    iid = df[C.IID].to_numpy(np.int64)
    out = np.zeros((n_users + 1, max_len), dtype=np.int64)
    if len(uid) == 0:
        return out
    counts = np.bincount(uid, minlength=n_users + 1)
    ends = np.cumsum(counts)  # exclusive end offset of each user's rows
    # distance from the end of the user's history: 0 for the most recent interaction
    from_end = ends[uid] - 1 - np.arange(len(uid))
    keep = from_end < max_len
    out[uid[keep], max_len - 1 - from_end[keep]] = iid[keep]
    return out


def seen_items(df: pd.DataFrame, n_users: int) -> list[np.ndarray]:
    """Per user (index = uid), the array of item ids in ``df``. Index 0 is empty."""
    uid = df[C.UID].to_numpy(np.int64)
    iid = df[C.IID].to_numpy(np.int64)
    counts = np.bincount(uid, minlength=n_users + 1)
    order = np.argsort(uid, kind="stable")
    return np.split(iid[order], np.cumsum(counts)[:-1])


def csr_items(df: pd.DataFrame, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` of the user x item incidence in ``df`` (CSR layout, rows = uid 0..n_users)."""
    uid = df[C.UID].to_numpy(np.int64)
    order = np.argsort(uid, kind="stable")
    counts = np.bincount(uid, minlength=n_users + 1)
    indptr = np.r_[0, np.cumsum(counts)]
    return indptr, df[C.IID].to_numpy(np.int64)[order]
