"""Knowledge vectors keyed by external user (or item) id, aligned to a dataset's internal ids.

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
from llmkt.errors import ConfigError, DataError


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
        src = f" ({self.meta['source']})" if self.meta.get("source") else ""
        dup = pd.Index(self.user_ids).duplicated()
        if dup.any():
            ids = pd.unique(self.user_ids[dup])
            raise DataError(f"profile vectors{src}: {len(ids)} user id(s) have more than one vector, e.g. "
                            f"{_few(ids)}; keep one vector per user.")
        bad = ~np.isfinite(self.vectors).all(axis=1)
        if bad.any():
            rows = np.flatnonzero(bad)
            raise DataError(f"profile vectors{src}: {len(rows)} user(s) have NaN or infinite values, e.g. user ids "
                            f"{_few(self.user_ids[rows])} (rows {rows[:5].tolist()}); regenerate or drop those "
                            "users.")

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
            try:
                z = np.load(path, allow_pickle=False)
                missing = [k for k in ("user_ids", "vectors") if k not in z.files]
                if missing:
                    raise DataError(f"{path}: a vectors .npz needs the arrays 'user_ids' and 'vectors' (as written by "
                                    f"ProfileVectors.save / llmkt profiles export); it lacks {missing} and holds "
                                    f"{z.files[:10]}.")
                meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
                user_ids, mat = z["user_ids"], z["vectors"]
            except (ValueError, OSError, EOFError, json.JSONDecodeError) as e:
                if isinstance(e, DataError):
                    raise
                raise DataError(f"{path}: not a readable vectors .npz ({type(e).__name__}: {str(e)[:160]}); write it "
                                "with ProfileVectors.save or `llmkt profiles export` (pickled arrays are refused)."
                                ) from None
            try:
                return cls(user_ids, mat, meta)
            except DataError as e:
                raise DataError(f"{path}: {e}") from None
        if path.suffix == ".npy":
            if ids is None:
                raise DataError("transfer.vectors.ids: a .npy matrix needs the file of user ids in row order "
                                "(.npy, .txt one per line, or .csv with a user_id column).")
            try:
                mat = np.load(path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise DataError(f"{path}: not a readable .npy matrix ({str(e)[:160]}).") from None
            return cls(_read_ids(Path(ids)), mat, {"source": str(path)})
        if path.suffix in (".parquet", ".csv"):
            df = _read_table(path)
            if C.USER not in df.columns:
                raise DataError(f"{path}: needs a {C.USER!r} column; columns: {list(df.columns)[:10]}.")
            if "vector" in df.columns:
                mat = np.stack(df["vector"].to_numpy())
            else:
                values = df.drop(columns=[C.USER])
                bad = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
                if bad:
                    col = bad[0]
                    num = pd.to_numeric(values[col], errors="coerce")
                    row = int(np.flatnonzero(num.isna() & values[col].notna())[0]) if (num.isna() &
                                                                                     values[col].notna()).any() else 0
                    raise DataError(f"{path}: column {col!r} is not numeric (row {row + 2} of the file holds "
                                    f"{values[col].iloc[row]!r}); every column except {C.USER!r} must be one "
                                    "dimension of the vector.")
                mat = values.to_numpy(dtype=np.float32)
            return cls(df[C.USER].to_numpy(), mat, {"source": str(path)})
        raise DataError(f"transfer.vectors.path: unsupported file type {path.suffix!r}; use .npz, .npy (+ ids), "
                        ".parquet or .csv.")


def _has_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def _read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        if not _has_pyarrow():
            raise DataError(f"{path}: reading .parquet needs pyarrow, which is not installed: pip install "
                            "'llmkt[parquet]' (or save the vectors as .npz or .csv).")
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: not a readable parquet file ({str(e)[:160]}).") from None
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header 'user_id,<dim 1>,<dim 2>,...' and one row "
                        "per user.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable CSV ({str(e)[:160]}).") from None


def _few(ids: Any, n: int = 5) -> str:
    ids = list(ids)
    return ", ".join(repr(i.item() if hasattr(i, "item") else i) for i in ids[:n]) + (" ..." if len(ids) > n else "")


def check_dataset(vectors: ProfileVectors, dataset_name: str, allow_other: bool, where: str) -> None:
    """Refuse vectors whose metadata names another dataset than the run's (ids would match the wrong users)."""
    made_for = vectors.meta.get("dataset")
    if made_for and made_for != dataset_name and not allow_other:
        raise ConfigError(f"{where}: the vectors were made for dataset {made_for!r} (their metadata says so), this "
                          f"run uses {dataset_name!r}: user ids would match the wrong users. Use vectors made for "
                          f"{dataset_name!r}, or set {where}.allow_other_dataset: true if the ids really are shared.")


def _read_ids(path: Path) -> np.ndarray:
    if not path.exists():
        raise DataError(f"transfer.vectors.ids: {path} does not exist.")
    if path.suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise DataError(f"transfer.vectors.ids: {path} is not a plain .npy array of ids ({str(e)[:160]}); "
                            "object arrays are refused because loading them unpickles (runs) code. Save the ids "
                            "as strings or integers, or as a .txt file with one id per line.") from None
    if path.suffix == ".csv":
        df = _read_table(path)
        if C.USER not in df.columns:
            raise DataError(f"transfer.vectors.ids: {path} needs a {C.USER!r} column; columns: {list(df.columns)[:10]}.")
        return df[C.USER].to_numpy()
    return np.array([line.strip() for line in path.read_text().splitlines() if line.strip()])


def _match_dtype(ids: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Cast ids read from text to the dataset's id type (e.g. '12' -> 12) so lookups match."""
    if len(reference) and np.issubdtype(np.asarray(reference).dtype, np.integer) and ids.dtype.kind in "UO":
        try:
            return ids.astype(np.int64)
        except ValueError:
            return ids
    return ids


def check_entity(vectors: ProfileVectors, side: str, where: str) -> None:
    """Refuse item vectors where user vectors belong and vice versa (``meta["entity"]``, when recorded)."""
    entity = vectors.meta.get("entity")
    if entity is not None and entity != side:
        raise DataError(f"{where}: these are {entity} vectors ({vectors.meta.get('source', 'vectors')}); {side} "
                        "vectors belong here.")
