"""Profile vectors keyed by external user id, aligned to a dataset's internal ids.

Sources: ``.npy`` matrix + ids file (``.npy``/``.txt``/``.csv``), a parquet or CSV table with ``user_id`` and
one column per dimension (or a ``vector`` list column), or a ``.npz`` written by :meth:`ProfileVectors.save`.
Users without a vector get a zero row and ``mask = False``; their transfer loss is zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmkt.data import columns as C
from llmkt.data.dataset import Dataset
from llmkt.errors import DataError


@dataclass
class ProfileVectors:
    """``vectors[i]`` belongs to external user ``user_ids[i]``; ``meta`` records encoder, reducer, source."""

    user_ids: np.ndarray
    vectors: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        self.user_ids = np.asarray(self.user_ids)
        if self.vectors.ndim != 2:
            raise DataError(f"profile vectors: expected a 2-D matrix (users x dims), got shape {self.vectors.shape}.")
        if len(self.user_ids) != len(self.vectors):
            raise DataError(f"profile vectors: {len(self.user_ids)} ids but {len(self.vectors)} vectors.")
        if pd.Index(self.user_ids).has_duplicates:
            raise DataError("profile vectors: duplicate user ids; keep one vector per user.")
        if not np.isfinite(self.vectors).all():
            raise DataError("profile vectors: NaN or infinite values; regenerate or drop those users.")

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def aligned(self, dataset: Dataset, by: str = "user") -> tuple[np.ndarray, np.ndarray]:
        """``(matrix, mask)`` indexed by internal uid (row 0 = padding): ``(n_users + 1, dim)``, ``(n_users + 1,)``.

        ``by="item"`` reads the ids as external item ids (item knowledge vectors) and indexes by internal iid.
        """
        id_map = dataset.user_map if by == "user" else dataset.item_map
        uid = id_map.to_internal(_match_dtype(self.user_ids, id_map.external_ids), unknown="zero")
        out = np.zeros((len(id_map) + 1, self.dim), dtype=np.float32)
        mask = np.zeros(len(id_map) + 1, dtype=bool)
        known = uid > 0
        out[uid[known]] = self.vectors[known]
        mask[uid[known]] = True
        return out, mask

    def coverage(self, dataset: Dataset) -> float:
        return float(self.aligned(dataset)[1][1:].mean())

    def control(self, kind: str, seed: int = 0) -> "ProfileVectors":
        """The same table made into a control that keeps its shape but breaks the link to users.

        ``shuffle``: every user gets another user's vector (a seeded derangement: rows cycled along a random
        order, so nobody keeps their own). ``random``: Gaussian vectors with each dimension's mean and std.
        ``none``: unchanged. A transfer result is read against the same run with a control (docs/transfer.md).
        """
        if kind == "none":
            return self
        rng = np.random.default_rng(seed)
        n = len(self.vectors)
        if kind == "shuffle":
            if n < 2:
                raise DataError("transfer.vectors.control='shuffle' needs vectors of at least 2 users.")
            order = rng.permutation(n)
            out = np.empty_like(self.vectors)
            out[order] = self.vectors[np.roll(order, 1)]  # user order[i] gets the vector of order[i - 1]
        elif kind == "random":
            out = rng.normal(self.vectors.mean(0), self.vectors.std(0), self.vectors.shape).astype(np.float32)
        else:
            raise DataError(f"transfer.vectors.control: expected 'none', 'shuffle' or 'random', got {kind!r}.")
        return ProfileVectors(self.user_ids.copy(), out, {**self.meta, "control": kind, "control_seed": seed})

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez(path, user_ids=self.user_ids.astype(str) if self.user_ids.dtype == object else self.user_ids,
                 vectors=self.vectors, meta=json.dumps(self.meta))
        return path if path.suffix == ".npz" else path.with_suffix(path.suffix + ".npz")

    @classmethod
    def load(cls, path: str | Path, ids: str | Path | None = None) -> "ProfileVectors":
        path = Path(path)
        if not path.exists():
            raise DataError(f"transfer.vectors.path: {path} does not exist.")
        if path.suffix == ".npz":
            z = np.load(path, allow_pickle=False)
            return cls(z["user_ids"], z["vectors"], json.loads(str(z["meta"])) if "meta" in z else {})
        if path.suffix == ".npy":
            if ids is None:
                raise DataError("transfer.vectors.ids: a .npy matrix needs the file of user ids in row order "
                                "(.npy, .txt one per line, or .csv with a user_id column).")
            return cls(_read_ids(Path(ids)), np.load(path), {"source": str(path)})
        if path.suffix in (".parquet", ".csv"):
            df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
            if C.USER not in df.columns:
                raise DataError(f"{path}: needs a {C.USER!r} column; columns: {list(df.columns)[:10]}.")
            if "vector" in df.columns:
                mat = np.stack(df["vector"].to_numpy())
            else:
                mat = df.drop(columns=[C.USER]).to_numpy(dtype=np.float32)
            return cls(df[C.USER].to_numpy(), mat, {"source": str(path)})
        raise DataError(f"transfer.vectors.path: unsupported file type {path.suffix!r}; use .npz, .npy (+ ids), "
                        ".parquet or .csv.")


def read_vectors(v: Any, split: Any = None, data_dir: str | None = None) -> ProfileVectors:
    """The table a ``VectorsConfig`` names (a file, or a profile store leak-checked against ``split``), with its
    control applied."""
    if v.profiles is not None:
        from llmkt.profiles.embed import export_vectors

        # every profile is checked against the split of the run that uses it (LeakError otherwise)
        vectors = export_vectors(v.profiles, [f"data.data_dir={data_dir}"] if data_dir else None, check_split=split,
                                 encoder_id=v.encoder)
    else:
        vectors = ProfileVectors.load(v.path, v.ids)
    return vectors.control(v.control, v.control_seed)


def _read_ids(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"transfer.vectors.ids: {path} does not exist.")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix == ".csv":
        return pd.read_csv(path)[C.USER].to_numpy()
    return np.array([line.strip() for line in path.read_text().splitlines() if line.strip()])


def _match_dtype(ids: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cast ids read from text to the dataset's id type (e.g. '12' -> 12) so lookups match."""
    if len(reference) and np.issubdtype(np.asarray(reference).dtype, np.integer) and ids.dtype.kind in "UO":
        try:
            return ids.astype(np.int64)
        except ValueError:
            return ids
    return ids
