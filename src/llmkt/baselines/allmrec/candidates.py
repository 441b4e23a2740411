"""Candidate sets for A-LLMRec's protocol: per user, 1 positive + ``n - 1`` negatives drawn uniformly from the items
outside the user's history, never the positive, seeded per (seed, user) and stored, so that every model ranks the
same sets.

Titles (optional): two items with the same normalised title would make a title answer ambiguous, so a negative
whose title equals the positive's or another candidate's is redrawn (``answers.normalise_title``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmkt.errors import DataError


@dataclass
class CandidateSets:
    """``uid (U,)``, ``items (U, n)`` internal item ids (shuffled: the positive's column varies), ``positive (U,)``."""

    uid: np.ndarray
    items: np.ndarray
    positive: np.ndarray
    seed: int

    def __len__(self) -> int:
        return len(self.uid)

    @property
    def n_candidates(self) -> int:
        return int(self.items.shape[1])

    def subset(self, rows: np.ndarray) -> "CandidateSets":
        return CandidateSets(self.uid[rows], self.items[rows], self.positive[rows], self.seed)

    def save(self, path: str | Path, user_map, item_map) -> Path:
        """CSV with external ids (the dataset's ``IdMap`` s): ``user_id, positive, candidates`` (space-separated),
        and ``<path>.seed``."""
        path = Path(path)
        frame = pd.DataFrame({"user_id": user_map.to_external(self.uid), "positive": item_map.to_external(self.positive),
                              "candidates": [" ".join(map(str, item_map.to_external(row))) for row in self.items]})
        tmp = path.with_suffix(path.suffix + ".tmp")
        frame.to_csv(tmp, index=False)
        tmp.replace(path)
        (path.parent / (path.name + ".seed")).write_text(str(self.seed))
        return path

    @classmethod
    def load(cls, path: str | Path, user_map, item_map) -> "CandidateSets":
        """Read a CSV written by :meth:`save`; ids unknown to the dataset are errors naming the row."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"candidates: {path} does not exist.")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = {"user_id", "positive", "candidates"} - set(frame.columns)
        if missing:
            raise DataError(f"candidates: {path} lacks column(s) {sorted(missing)}; expected user_id, positive, "
                            "candidates (space-separated item ids).")
        user_ext = np.asarray(user_map.external_ids)
        item_ext = np.asarray(item_map.external_ids)
        u_lookup = {str(x): i + 1 for i, x in enumerate(user_ext)}
        i_lookup = {str(x): i + 1 for i, x in enumerate(item_ext)}
        uid, pos, items = [], [], []
        width = None
        for row, rec in enumerate(frame.itertuples(index=False), start=2):
            cands = rec.candidates.split()
            width = width or len(cands)
            if len(cands) != width:
                raise DataError(f"candidates: {path} line {row}: {len(cands)} candidates, the first row has {width}.")
            try:
                uid.append(u_lookup[rec.user_id])
                pos.append(i_lookup[rec.positive])
                items.append([i_lookup[c] for c in cands])
            except KeyError as e:
                raise DataError(f"candidates: {path} line {row}: id {e.args[0]!r} is not in the dataset.") from None
            if pos[-1] not in items[-1]:
                raise DataError(f"candidates: {path} line {row}: the positive {rec.positive} is not among the "
                                "candidates.")
        seed_file = path.parent / (path.name + ".seed")
        seed = int(seed_file.read_text()) if seed_file.exists() else -1
        return cls(np.asarray(uid, np.int64), np.asarray(items, np.int64).reshape(len(uid), width or 0),
                   np.asarray(pos, np.int64), seed)


def sample_candidates(history: list[np.ndarray], targets: pd.DataFrame | tuple[np.ndarray, np.ndarray], n_items: int,
                      *, n_candidates: int = 20, seed: int = 0, stream: int = 0, titles: np.ndarray | None = None,
                      max_tries: int = 1000) -> CandidateSets:
    """Candidates of each target user.

    ``history[uid]``: internal ids the user has seen (everything before the target, excluded as negatives);
    ``targets``: ``(uid, iid)`` arrays or a frame with ``uid, iid`` columns (the first row per user is used);
    ``titles[iid]``: normalised titles as the prompt shows them (``""`` = none) to keep candidate titles distinct.
    Each user's draw uses ``default_rng([seed, stream, uid])``: a user's set does not depend on which other users are
    sampled, and each use has its own stream (0: the stored evaluation sets; training draws use 1 + epoch), so
    training never sees the evaluation negatives.
    """
    if isinstance(targets, pd.DataFrame):
        first = targets.drop_duplicates("uid", keep="first")
        uids, pos = np.array(first["uid"], np.int64), np.array(first["iid"], np.int64)
    else:
        uids, pos = (np.asarray(t, np.int64) for t in targets)
    n_neg = n_candidates - 1
    out = np.empty((len(uids), n_candidates), np.int64)
    for r, (u, p) in enumerate(zip(uids, pos)):
        rng = np.random.default_rng([seed, stream, int(u)])
        banned = set(history[u].tolist()) | {int(p), 0}
        if n_items - len(banned) + 1 < n_neg:
            raise DataError(f"candidates: user uid={u} has seen {len(banned) - 1} of {n_items} items; fewer than "
                            f"{n_neg} unseen items are left to draw negatives from. Lower n_candidates.")
        seen_titles = {titles[p]} if titles is not None and titles[p] else set()
        negs: list[int] = []
        tries = 0
        while len(negs) < n_neg:
            tries += 1
            if tries > max_tries * n_neg:
                raise DataError(f"candidates: could not draw {n_neg} distinct negatives for uid={u}.")
            c = int(rng.integers(1, n_items + 1))
            if c in banned:
                continue
            if titles is not None:
                t = titles[c]
                if t and t in seen_titles:
                    continue
                if t:
                    seen_titles.add(t)
            banned.add(c)
            negs.append(c)
        row = np.asarray([int(p)] + negs, np.int64)
        out[r] = row[rng.permutation(n_candidates)]
    return CandidateSets(uids, out, pos, seed)
