"""Users' training histories, the only thing an LLM may read, and the leak check on stored profiles.

A profile records the exact interactions it saw (``item_id, timestamp, order``), their hash and the cutoff.
``check_leak_free`` refuses profiles whose interactions are not all in the training part of a split.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

import numpy as np
import pandas as pd

from llmkt.data import columns as C
from llmkt.data.splits import Split
from llmkt.errors import DataError

Domain = Literal["movie", "product", "generic"]


class LeakError(DataError):
    """A profile was built from interactions outside the training part of the split in use."""


@dataclass
class UserHistory:
    """One user's training interactions, oldest first, joined with item metadata.

    ``items`` columns: ``item_id, timestamp, order`` and, when known, ``rating, title, year, genres``.
    """

    user_id: Any
    uid: int
    items: pd.DataFrame
    user: dict[str, Any] = field(default_factory=dict)

    @property
    def cutoff(self) -> tuple[int, int]:
        last = self.items.iloc[-1]
        return int(last[C.TIMESTAMP]), int(last[C.ORDER])

    def keys(self) -> list[list[Any]]:
        """``[item_id, timestamp, order]`` per interaction: what is stored and checked for leaks."""
        return [[_plain(i), int(t), int(o)] for i, t, o in
                zip(self.items[C.ITEM], self.items[C.TIMESTAMP], self.items[C.ORDER])]

    def subset(self, rows: np.ndarray | slice) -> "UserHistory":
        return UserHistory(self.user_id, self.uid, self.items.iloc[rows].reset_index(drop=True), self.user)

    def __len__(self) -> int:
        return len(self.items)


def _plain(x: Any) -> Any:
    """numpy scalars -> Python scalars, so ids serialise to JSON the same way every time."""
    return x.item() if isinstance(x, np.generic) else x


def history_hash(keys: list[list[Any]]) -> str:
    return hashlib.sha256(json.dumps(keys, separators=(",", ":")).encode()).hexdigest()


def user_key(user_id: Any) -> str:
    """The store's text form of an external user id (JSON keeps 5 and "5" apart)."""
    return json.dumps(_plain(user_id))


def detect_domain(items: pd.DataFrame | None) -> Domain:
    if items is None:
        return "generic"
    if "genres" in items.columns:
        return "movie"
    if "title" in items.columns:
        return "product"
    return "generic"


def training_histories(split: Split, users: Iterable[Any] | None = None) -> list[UserHistory]:
    """Training histories of every user with at least one training interaction (or of ``users``, external ids)."""
    ds = split.dataset
    train = split.train
    cols = [C.UID, C.USER, C.ITEM, C.TIMESTAMP, C.ORDER] + ([C.RATING] if C.RATING in train.columns else [])
    df = train[cols]
    if ds.items is not None:
        meta = [c for c in ("title", "year", "genres") if c in ds.items.columns]
        if meta:
            df = df.merge(ds.items[[C.ITEM, *meta]], on=C.ITEM, how="left", validate="many_to_one")
    if users is not None:
        wanted = list(users)
        uid = ds.user_map.to_internal(wanted, unknown="zero")
        missing = [u for u, i in zip(wanted, uid) if i == 0]
        if missing:
            raise DataError(f"users.ids: unknown user id(s) {missing[:5]} for dataset {ds.name!r}.")
        df = df[df[C.UID].isin(set(uid.tolist()))]
    df = df.sort_values([C.UID, C.TIMESTAMP, C.ORDER], kind="stable")
    user_meta: dict[int, dict[str, Any]] = {}
    if ds.users is not None:
        keep = [c for c in ds.users.columns if c not in (C.USER, C.UID)]
        for row in ds.users[[C.UID, *keep]].itertuples(index=False):
            user_meta[int(row[0])] = {k: _plain(v) for k, v in zip(keep, row[1:])}
    df = df.reset_index(drop=True)
    uids, ext = df[C.UID].to_numpy(), df[C.USER].to_numpy()
    body = df.drop(columns=[C.UID, C.USER])
    starts = np.r_[0, np.flatnonzero(np.diff(uids)) + 1] if len(df) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(df)] if len(df) else starts
    return [UserHistory(_plain(ext[a]), int(uids[a]), body.iloc[a:b].reset_index(drop=True),
                        user_meta.get(int(uids[a]), {})) for a, b in zip(starts, ends)]


def _seen(split: Split, profiled: Any, other: Any) -> str:
    if split.params.get("entity") == "item":  # Split.by_item(): the profiled id is an item
        return f"item {profiled!r} was written from user {other!r}'s interaction"
    return f"user {profiled!r} saw item {other!r}"


def check_leak_free(records: Iterable[tuple[Any, list[list[Any]]]], split: Split) -> None:
    """Raise :class:`LeakError` if any ``(user_id, keys)`` pair holds an interaction outside ``split.train``.

    The message names the user, the interaction and the part of the split it belongs to.
    """
    def index(frame: pd.DataFrame) -> set[tuple[str, str, int, int]]:
        return set(zip(frame[C.USER].map(user_key), frame[C.ITEM].map(lambda x: json.dumps(_plain(x))),
                       frame[C.TIMESTAMP].astype(np.int64).tolist(), frame[C.ORDER].astype(np.int64).tolist()))

    train = index(split.train)
    bad: list[tuple[Any, list[Any]]] = []
    n_bad_users = 0
    for user_id, keys in records:
        u = user_key(user_id)
        outside = [k for k in keys if (u, json.dumps(k[0]), int(k[1]), int(k[2])) not in train]
        if outside:
            n_bad_users += 1
            bad.extend((user_id, k) for k in outside[:1])
    if not bad:
        return
    valid, test = index(split.valid), index(split.test)
    user_id, k = bad[0]
    probe = (user_key(user_id), json.dumps(k[0]), int(k[1]), int(k[2]))
    where = "the test part" if probe in test else "the validation part" if probe in valid else "no part of this split"
    raise LeakError(
        f"{n_bad_users} profile(s) were built from interactions outside the training part of this "
        f"{split.kind} split; e.g. {_seen(split, user_id, k[0])} at timestamp {k[1]}, which is in {where}. "
        "Using them would leak evaluation data into training. Regenerate the profiles from this split "
        "(`llmkt profiles generate` with the same data and split sections).")
