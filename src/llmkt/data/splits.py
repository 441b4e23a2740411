"""Leak-free splits. Each returns train / valid / test plus the training cutoff per user.

* ``leave_one_out``: per user, last interaction to test, second last to valid, the rest to train.
* ``global_temporal``: one timestamp boundary for everybody (quantiles of all timestamps), as in the
  sequential-distillation paper: train before the valid boundary, valid before the test boundary.
* ``ratio``: per user, time-ordered 70/10/20 (LLM-KT), ratios configurable.
* ``given``: three tables that name each interaction's part (a published split), validated.

Order within a user is (timestamp, order): ties keep the file order. Every split guarantees, per user, that no
valid or test interaction comes before a training one, and no test interaction before a valid one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmkt.data import columns as C
from llmkt.data.dataset import Dataset
from llmkt.errors import DataError

SplitKind = Literal["leave_one_out", "global_temporal", "ratio", "given"]


@dataclass
class Split:
    """A split of a dataset. Frames share the dataset's columns; ``cutoffs`` has one row per user with
    ``uid, user_id, n_train, cutoff_timestamp, cutoff_order`` (the last training interaction)."""

    dataset: Dataset
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    cutoffs: pd.DataFrame
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params, "train": len(self.train), "valid": len(self.valid),
                "test": len(self.test), "valid_users": int(self.valid[C.UID].nunique()),
                "test_users": int(self.test[C.UID].nunique())}

    def history(self, stage: Literal["valid", "test"]) -> pd.DataFrame:
        """Interactions a model may see when predicting ``stage``: train, plus valid for the test stage."""
        if stage == "valid":
            return self.train
        if stage == "test":
            return pd.concat([self.train, self.valid]).sort_values([C.UID, C.TIMESTAMP, C.ORDER], kind="stable")
        raise DataError(f"stage: expected 'valid' or 'test', got {stage!r}.")

    def targets(self, stage: Literal["valid", "test"]) -> pd.DataFrame:
        if stage == "valid":
            return self.valid
        if stage == "test":
            return self.test
        raise DataError(f"stage: expected 'valid' or 'test', got {stage!r}.")


    def by_item(self) -> "Split":
        """The same split seen from the items: every frame with users and items swapped (``user_id``/``uid`` hold
        the item, ``item_id``/``iid`` the user), sorted by item and time; the dataset's item table becomes the users
        table and vice versa. Item profiles are built, keyed and leak-checked on this view exactly as user
        profiles are on the split itself: an item's "history" is its training interactions."""
        ds = self.dataset
        swap = {C.USER: C.ITEM, C.ITEM: C.USER, C.UID: C.IID, C.IID: C.UID}

        def flip(frame: pd.DataFrame) -> pd.DataFrame:
            return frame.rename(columns=swap).sort_values([C.UID, C.TIMESTAMP, C.ORDER], kind="stable"
                                                          ).reset_index(drop=True)

        def table(frame: pd.DataFrame | None) -> pd.DataFrame | None:
            return None if frame is None else frame.rename(columns=swap)

        flipped = Dataset(interactions=flip(ds.interactions), user_map=ds.item_map, item_map=ds.user_map,
                          items=table(ds.users), users=table(ds.items), name=ds.name,
                          info={**ds.info, "entity": "item"})
        train = flip(self.train)
        return Split(flipped, train, flip(self.valid), flip(self.test), _cutoffs(flipped, train), self.kind,
                     {**self.params, "entity": "item"})


def _rank_within_user(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Position of each row within its user (0-based, time order) and the user's count; ``df`` sorted by user/time."""
    uid = df[C.UID].to_numpy()
    counts = df.groupby(C.UID, sort=False)[C.UID].transform("size").to_numpy()
    starts = np.r_[0, np.flatnonzero(np.diff(uid)) + 1]
    start_of_row = np.repeat(starts, np.diff(np.r_[starts, len(uid)]))
    return np.arange(len(uid)) - start_of_row, counts


def _cutoffs(dataset: Dataset, train: pd.DataFrame) -> pd.DataFrame:
    g = train.groupby(C.UID, sort=True)
    out = pd.DataFrame({"n_train": g.size(), "cutoff_timestamp": g[C.TIMESTAMP].max(),
                        "cutoff_order": g[C.ORDER].last()})
    out = out.reindex(np.arange(1, dataset.n_users + 1))
    out["n_train"] = out["n_train"].fillna(0).astype(np.int64)
    out.index.name = C.UID
    out = out.reset_index()
    out.insert(1, C.USER, dataset.user_map.to_external(out[C.UID]))
    return out


def _ordered(dataset: Dataset) -> pd.DataFrame:
    return dataset.interactions  # Dataset keeps interactions sorted by uid, timestamp, order.


def leave_one_out(dataset: Dataset, min_train: int = 1) -> Split:
    """Last interaction of each user to test, second last to valid. Users with fewer than ``min_train + 2``
    interactions stay entirely in train (they have nothing to evaluate)."""
    df = _ordered(dataset)
    pos, counts = _rank_within_user(df)
    eligible = counts >= min_train + 2
    is_test = eligible & (pos == counts - 1)
    is_valid = eligible & (pos == counts - 2)
    is_train = ~(is_test | is_valid)
    train, valid, test = df[is_train], df[is_valid], df[is_test]
    return Split(dataset, train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True),
                 _cutoffs(dataset, train), "leave_one_out", {"min_train": min_train})


def ratio_split(dataset: Dataset, train: float = 0.7, valid: float = 0.1, test: float = 0.2) -> Split:
    """Per user, the first ``train`` share of their interactions in time order to train, the next ``valid``
    share to valid, the rest to test. Boundaries are ``round(n * share)``; every user keeps at least one
    training interaction."""
    if min(train, valid, test) < 0 or abs(train + valid + test - 1.0) > 1e-6 or train <= 0:
        raise DataError(f"split ratios: expected non-negative shares summing to 1 with train > 0; "
                        f"got train={train}, valid={valid}, test={test}.")
    df = _ordered(dataset)
    pos, counts = _rank_within_user(df)
    train_end = np.maximum(1, np.round(counts * train)).astype(np.int64)
    valid_end = np.maximum(train_end, np.round(counts * (train + valid))).astype(np.int64)
    tr, va = pos < train_end, (pos >= train_end) & (pos < valid_end)
    te = pos >= valid_end
    tr_df = df[tr].reset_index(drop=True)
    return Split(dataset, tr_df, df[va].reset_index(drop=True), df[te].reset_index(drop=True),
                 _cutoffs(dataset, tr_df), "ratio", {"train": train, "valid": valid, "test": test})


def global_temporal(dataset: Dataset, valid_quantile: float = 0.8, test_quantile: float = 0.9) -> Split:
    """One time boundary for all users. Interactions with timestamp ``< t_valid`` train, ``[t_valid, t_test)``
    valid, ``>= t_test`` test, with ``t_q`` the q-quantile of all timestamps. Only users with training history
    are kept in valid/test (a model cannot rank for a user it has never seen)."""
    if not 0 < valid_quantile <= test_quantile < 1:
        raise DataError(f"split: expected 0 < valid_quantile <= test_quantile < 1; got {valid_quantile}, "
                        f"{test_quantile}.")
    df = _ordered(dataset)
    ts = df[C.TIMESTAMP].to_numpy()
    t_valid, t_test = np.quantile(ts, valid_quantile), np.quantile(ts, test_quantile)
    tr = df[ts < t_valid].reset_index(drop=True)
    known = df[C.UID].isin(tr[C.UID].unique()).to_numpy()
    va = df[(ts >= t_valid) & (ts < t_test) & known].reset_index(drop=True)
    te = df[(ts >= t_test) & known].reset_index(drop=True)
    if len(tr) == 0:
        raise DataError("split global_temporal: no interaction before the valid boundary; raise valid_quantile.")
    return Split(dataset, tr, va, te, _cutoffs(dataset, tr), "global_temporal",
                 {"valid_quantile": valid_quantile, "test_quantile": test_quantile,
                  "t_valid": float(t_valid), "t_test": float(t_test)})


def make_split(dataset: Dataset, kind: SplitKind, **params: Any) -> Split:
    funcs = {"leave_one_out": leave_one_out, "global_temporal": global_temporal, "ratio": ratio_split}
    if kind not in funcs:
        raise DataError(f"split.kind: unknown split {kind!r}; available: {sorted(funcs)}.")
    return funcs[kind](dataset, **params)


def given_split(dataset: Dataset, parts: dict[str, pd.DataFrame], sources: dict[str, str] | None = None) -> Split:
    """A split given as three tables (``train``, ``valid``, ``test``) of ``user_id, item_id[, timestamp]`` rows,
    matched to the dataset's interactions on those columns.

    Validated: every id is known to the dataset; no interaction is in two parts; where the parts carry timestamps,
    no user's valid or test interaction comes before their last training one. Part rows that match no interaction
    (removed by preprocessing) and interactions in no part are left out and counted (``params``). Valid/test users
    without a training interaction are left out too (a model cannot rank for a user it has never seen).
    """
    sources = sources or {}
    names = ("train", "valid", "test")
    if set(parts) != set(names):
        raise DataError(f"given split: expected the parts {list(names)}, got {sorted(parts)}.")
    ts_given = all(C.TIMESTAMP in parts[n].columns for n in names)
    keys = [C.UID, C.IID] + ([C.TIMESTAMP] if ts_given else [])
    inter = _ordered(dataset)
    index = inter[keys].copy()
    index["_row"] = np.arange(len(inter))
    if index.duplicated(keys).any():
        first = inter[index.duplicated(keys, keep=False).to_numpy()].iloc[0]
        raise DataError(f"given split: the dataset holds the interaction (user {first[C.USER]!r}, item "
                        f"{first[C.ITEM]!r}{', time ' + str(first[C.TIMESTAMP]) if ts_given else ''}) more than once, "
                        "so a part row cannot name one of them; keep duplicates out (data.duplicates: keep_last)"
                        + ("" if ts_given else " or give timestamps in the part files") + ".")
    rows: dict[str, np.ndarray] = {}
    dropped = {}
    for name in names:
        df = parts[name]
        src = sources.get(name, name)
        missing = [c for c in (C.USER, C.ITEM) if c not in df.columns]
        if missing:
            raise DataError(f"given split: {src} has no column {missing}; columns: {list(df.columns)[:10]}.")
        part = pd.DataFrame({C.UID: _ids(dataset.user_map, df[C.USER], src, C.USER),
                             C.IID: _ids(dataset.item_map, df[C.ITEM], src, C.ITEM)})
        if ts_given:
            part[C.TIMESTAMP] = df[C.TIMESTAMP].to_numpy()
            part = part.astype({C.TIMESTAMP: inter[C.TIMESTAMP].dtype}, errors="ignore")
        matched = part.merge(index, on=keys, how="left")
        rows[name] = matched["_row"].dropna().astype(np.int64).to_numpy()
        dropped[name] = int(matched["_row"].isna().sum())
    every = np.concatenate([rows[n] for n in names])
    if len(np.unique(every)) != len(every):
        values, counts = np.unique(every, return_counts=True)
        r = inter.iloc[int(values[counts > 1][0])]
        where = [n for n in names if (rows[n] == values[counts > 1][0]).any()]
        raise DataError(f"given split: the parts overlap: (user {r[C.USER]!r}, item {r[C.ITEM]!r}) is in "
                        f"{' and '.join(where) if len(where) > 1 else where[0] + ' twice'}; every interaction "
                        "belongs to one part.")
    frames = {n: inter.iloc[np.sort(rows[n])].reset_index(drop=True) for n in names}
    train = frames["train"]
    known = set(train[C.UID].unique())
    cold = {n: int((~frames[n][C.UID].isin(known)).sum()) for n in ("valid", "test")}
    for n in ("valid", "test"):
        frames[n] = frames[n][frames[n][C.UID].isin(known)].reset_index(drop=True)
    if ts_given:
        last = train.groupby(C.UID)[C.TIMESTAMP].max()
        for n in ("valid", "test"):
            early = frames[n][frames[n][C.TIMESTAMP] < frames[n][C.UID].map(last)]
            if len(early):
                r = early.iloc[0]
                raise DataError(f"given split: user {r[C.USER]!r} has a {n} interaction (item {r[C.ITEM]!r}, time "
                                f"{r[C.TIMESTAMP]}) before their last training one ({last[r[C.UID]]}); "
                                f"{len(early)} {n} row(s) like that. A split must not train on the future.")
        first_test = frames["test"].groupby(C.UID)[C.TIMESTAMP].min()
        late_valid = frames["valid"][frames["valid"][C.TIMESTAMP] > frames["valid"][C.UID].map(first_test)]
        if len(late_valid):
            r = late_valid.iloc[0]
            raise DataError(f"given split: user {r[C.USER]!r} has a valid interaction (item {r[C.ITEM]!r}) after "
                            "their first test one; validation must come before test.")
    params = {"files": {n: sources.get(n, "<frame>") for n in names}, "rows": {n: len(frames[n]) for n in names},
              "part_rows_not_in_dataset": dropped, "interactions_in_no_part": int(len(inter) - len(every)),
              "cold_rows_dropped": cold, "ordered_by": "timestamp" if ts_given else "file order"}
    return Split(dataset, train, frames["valid"], frames["test"], _cutoffs(dataset, train), "given", params)


def _ids(id_map: Any, values: pd.Series, src: str, col: str) -> np.ndarray:
    ext = values.to_numpy()
    ref = id_map.external_ids
    if len(ref) and np.issubdtype(np.asarray(ref).dtype, np.integer) and ext.dtype.kind in "UOT":
        try:
            ext = ext.astype(np.int64)
        except ValueError:
            pass
    elif len(ref) and np.asarray(ref).dtype.kind in "UOT" and ext.dtype.kind in "iu":
        ext = ext.astype(str)
    out = id_map.to_internal(ext, unknown="zero")
    if (out == 0).any():
        i = int(np.flatnonzero(out == 0)[0])
        raise DataError(f"given split: {src} line {i + 2}: {col} {values.iloc[i]!r} is not in the dataset "
                        f"({int((out == 0).sum())} row(s) like that); the parts must use the dataset's ids.")
    return out
