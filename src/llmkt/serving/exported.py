"""An exported model: weights, config, id maps and histories in plain files, loaded without llmkt's training code.

An export folder (written by ``llmkt export RUN_DIR -o DIR``, :func:`llmkt.experiments.export.export_run`)::

    model.safetensors   the best checkpoint's tensors (safetensors: no code runs when it is read)
    model.json          {"format": "llmkt-export", "format_version": 1, "model": "sasrec", "params": {...},
                         "kind": "sequential", "n_items": ..., "n_users": ..., "max_len": ...}
    ids.json            {"users": [...], "items": [...]}: external ids in internal order (internal id = index + 1)
    history.safetensors "indptr" (n_users + 2,), "items" (n,): each user's interactions in time order (internal ids)
    graph.safetensors   LightGCN only: "uid", "iid", the training pairs its propagation runs over
    items.csv           the item catalogue (item_id first, then the dataset's item columns, e.g. title)
    metadata.json       dataset, split, metrics at training, transfer settings, export time, file checksums

:func:`load_exported` reads these with ``llmkt.models`` and ``llmkt.data`` only: no ``llmkt.training``,
``llmkt.transfer``, ``llmkt.profiles``, ``llmkt.experiments`` or ``llmkt.config`` module is imported (the model
serves as a plain recommender: that is the point of knowledge transfer). Scores equal those of the run's best
checkpoint on the same histories (tests/serving/test_exported.py).
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from llmkt.errors import DataError
from llmkt.models.base import Recommender
from llmkt.models.registry import build_model_from_params

FORMAT = "llmkt-export"
FORMAT_VERSION = 1
#: model kinds an export can hold (click-prediction models score (user, item, features) rows, not catalogues)
RANKING_KINDS = ("sequential", "pairs", "user_rows")
#: kinds that score a history posted by a client (no per-user parameters): sequential and user-row models
HISTORY_KINDS = ("sequential", "user_rows")
FILES = ("model.safetensors", "model.json", "ids.json", "history.safetensors", "metadata.json")
OPTIONAL_FILES = ("graph.safetensors", "items.csv")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _plain_ids(ids: np.ndarray) -> list:
    """External ids as JSON values (numpy ints/floats/strings -> Python)."""
    return [v.item() if isinstance(v, np.generic) else v for v in np.asarray(ids, dtype=object).tolist()]


def write_export(out: Path, *, model: Recommender, name: str, params: dict[str, Any], n_users: int,
                 user_ids: np.ndarray, item_ids: np.ndarray, indptr: np.ndarray, items: np.ndarray,
                 metadata: dict[str, Any], catalogue: pd.DataFrame | None = None,
                 graph: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write an export folder from objects (the run-folder side is :func:`llmkt.experiments.export.export_run`).

    ``indptr``/``items``: CSR of every user's interactions in time order, rows = internal user ids ``0..n_users``.
    Files are written to ``out`` through temporary names and renamed last, ``metadata.json`` after the others:
    a folder with ``metadata.json`` is complete."""
    from safetensors.torch import save_file

    if model.kind not in RANKING_KINDS:
        raise DataError(f"export: model {name!r} is a click-prediction model (kind {model.kind!r}); only ranking "
                        f"models ({', '.join(RANKING_KINDS)}) are exported for top-k serving.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # rewriting a folder: first drop the completion mark, at the end every file of the old export not written again
    (out / "metadata.json").unlink(missing_ok=True)

    def put(fname: str, write) -> str:
        tmp = out / (fname + ".tmp")
        write(tmp)
        tmp.replace(out / fname)
        return sha256(out / fname)

    # clone: safetensors refuses tensors that share memory (tied weights); a copy per name is what it stores
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    sums = {"model.safetensors": put("model.safetensors", lambda p: save_file(state, str(p)))}
    spec = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": name, "params": params, "kind": model.kind,
            "n_items": int(len(item_ids)), "n_users": int(n_users),
            "max_len": int(model.max_len) if model.max_len is not None else None, "hist_len": int(model.hist_len)}
    sums["model.json"] = put("model.json", lambda p: p.write_text(json.dumps(spec, indent=2)))
    ids = {"users": _plain_ids(user_ids), "items": _plain_ids(item_ids)}
    sums["ids.json"] = put("ids.json", lambda p: p.write_text(json.dumps(ids)))
    hist = {"indptr": torch.from_numpy(np.array(indptr, dtype=np.int64)),
            "items": torch.from_numpy(np.array(items, dtype=np.int64))}
    sums["history.safetensors"] = put("history.safetensors", lambda p: save_file(hist, str(p)))
    if graph is not None:
        g = {"uid": torch.from_numpy(np.array(graph[0], dtype=np.int64)),
             "iid": torch.from_numpy(np.array(graph[1], dtype=np.int64))}
        sums["graph.safetensors"] = put("graph.safetensors", lambda p: save_file(g, str(p)))
    if catalogue is not None:
        sums["items.csv"] = put("items.csv", lambda p: catalogue.to_csv(p, index=False, quoting=csv.QUOTE_NONNUMERIC))
    for stale in (*OPTIONAL_FILES, *FILES):
        if stale not in sums and stale != "metadata.json":
            (out / stale).unlink(missing_ok=True)
    meta = {**metadata, "files": sums}
    put("metadata.json", lambda p: p.write_text(json.dumps(meta, indent=2, default=str)))
    return out


@dataclass
class Recommendations:
    """Top-k of one request: external item ids and their scores, best first."""

    item_ids: list
    scores: list[float]
    titles: list[str] | None = None


@dataclass
class ExportedModel:
    """A model loaded from an export folder, ready to score. ``recommend`` (known users) and ``recommend_history``
    (posted histories, sequential and user-row models) return DataFrames like RecTools: ``user_id, item_id, score,
    rank``; :meth:`top_k` is the array-level call the HTTP server batches."""

    path: Path
    model: Recommender = field(repr=False)
    spec: dict[str, Any]
    metadata: dict[str, Any] = field(repr=False)
    user_ids: list = field(repr=False)
    item_ids: list = field(repr=False)
    indptr: np.ndarray = field(repr=False)
    items: np.ndarray = field(repr=False)
    titles: list[str] | None = field(default=None, repr=False)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def __post_init__(self) -> None:
        self._user_index = {str(u): i + 1 for i, u in enumerate(self.user_ids)}
        self._item_index = {str(v): i + 1 for i, v in enumerate(self.item_ids)}

    # -- ids ---------------------------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def accepts_history(self) -> bool:
        """Whether the model scores a posted history (it has no per-user parameters)."""
        return self.model.kind in HISTORY_KINDS

    def user_index(self, user_id: Any) -> int | None:
        """Internal id of an external user id (matched as text: 196 and "196" are the same user), or None."""
        return self._user_index.get(str(user_id))

    def item_indices(self, item_ids: Iterable[Any]) -> tuple[np.ndarray, list]:
        """``(internal ids, unknown external ids)`` of ``item_ids``."""
        ids, unknown = [], []
        for v in item_ids:
            i = self._item_index.get(str(v))
            if i is None:
                unknown.append(v)
            else:
                ids.append(i)
        return np.asarray(ids, dtype=np.int64), unknown

    def history(self, uid: int) -> np.ndarray:
        """The stored interactions of internal user ``uid`` in time order (internal item ids)."""
        return self.items[self.indptr[uid]:self.indptr[uid + 1]]

    # -- scoring -----------------------------------------------------------------------------------------------
    def _batch(self, uids: np.ndarray, histories: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        kind, b = self.model.kind, len(uids)
        batch = {"uid": torch.as_tensor(np.asarray(uids, dtype=np.int64))}
        if kind == "user_rows":
            rows = torch.zeros(b, self.n_items + 1)
            for r, h in enumerate(histories):
                rows[r, torch.as_tensor(h, dtype=torch.long)] = 1.0
            batch["items"] = rows  # (B, n_items + 1) multi-hot
        else:
            width = self.model.max_len if kind == "sequential" else self.model.hist_len
            if width:
                seq = np.zeros((b, width), dtype=np.int64)  # (B, L) left-padded, most recent item last
                for r, h in enumerate(histories):
                    h = np.asarray(h, dtype=np.int64)[-width:]
                    if len(h):
                        seq[r, width - len(h):] = h
                batch["seq" if kind == "sequential" else "hist"] = torch.from_numpy(seq)
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def scores(self, uids: np.ndarray, histories: Sequence[np.ndarray]) -> torch.Tensor:
        """``(B, n_items + 1)`` scores (column 0 = padding) of internal users ``uids`` (0 for a posted history)
        with ``histories`` (internal item ids in time order)."""
        return self.model.score(self._batch(uids, histories)).float().cpu()

    def top_k(self, uids: np.ndarray, histories: Sequence[np.ndarray], ks: Sequence[int],
              exclude_seen: Sequence[bool]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row ``(internal item ids, scores)`` of the best ``ks[r]`` items, history items removed where
        ``exclude_seen[r]``; fewer than ``k`` when fewer items are left."""
        s = self.scores(uids, histories)
        s[:, 0] = -torch.inf
        for r, h in enumerate(histories):
            if exclude_seen[r] and len(h):
                s[r, torch.as_tensor(h, dtype=torch.long)] = -torch.inf
        values, idx = torch.topk(s, min(max(ks), self.n_items), dim=1)
        out = []
        for r, k in enumerate(ks):
            v, i = values[r, :k], idx[r, :k]
            keep = torch.isfinite(v)
            out.append((i[keep].numpy(), v[keep].numpy()))
        return out

    def _frame(self, rows: list[tuple[Any, np.ndarray, np.ndarray]]) -> pd.DataFrame:
        recs = [(u, self.item_ids[i - 1], float(v), r + 1) for u, ids, vals in rows
                for r, (i, v) in enumerate(zip(ids.tolist(), vals.tolist()))]
        return pd.DataFrame(recs, columns=["user_id", "item_id", "score", "rank"])

    def recommend(self, users: Iterable[Any], k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` for known external user ids from their stored histories: ``user_id, item_id, score, rank``."""
        users = list(users)
        self._check_k(k)
        uids = [self.user_index(u) for u in users]
        unknown = [u for u, i in zip(users, uids) if i is None]
        if unknown:
            raise DataError(f"recommend: {len(unknown)} unknown user id(s), e.g. {unknown[:5]}; the export knows "
                            f"{len(self.user_ids)} users (ids.json).")
        hist = [self.history(u) for u in uids]
        res = self.top_k(np.asarray(uids), hist, [k] * len(users), [exclude_seen] * len(users))
        return self._frame([(u, ids, vals) for u, (ids, vals) in zip(users, res)])

    def recommend_history(self, item_ids: Sequence[Any], k: int = 10, exclude_seen: bool = True) -> pd.DataFrame:
        """Top-``k`` for a history of external item ids in time order (user_id column None)."""
        self._check_k(k)
        if not self.accepts_history:
            raise DataError(f"recommend_history: model {self.spec['model']!r} scores known users only (it has "
                            "per-user parameters); use recommend(user_ids).")
        ids, unknown = self.item_indices(item_ids)
        if unknown:
            raise DataError(f"recommend_history: unknown item id(s) {unknown[:10]}; the export knows "
                            f"{self.n_items} items (ids.json).")
        ((top, vals),) = self.top_k(np.zeros(1, dtype=np.int64), [ids], [k], [exclude_seen])
        return self._frame([(None, top, vals)])

    def _check_k(self, k: int) -> None:
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= self.n_items:
            raise DataError(f"k must be an integer between 1 and {self.n_items} (the number of items); got {k!r}.")


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"load_exported: {path} is missing; {what}. Export the run again with `llmkt export RUN_DIR "
                        "-o DIR`.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"load_exported: {path} is not valid JSON ({e}); the file is damaged.") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise DataError(f"load_exported: {path} is missing; export the run again with `llmkt export RUN_DIR -o DIR`.")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise DataError(f"load_exported: {path} is not a readable safetensors file ({e}); the file is damaged.") \
            from None


def load_exported(path: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> ExportedModel:
    """Rebuild the model of an export folder for scoring. ``verify`` checks every file against the SHA-256 sums
    in ``metadata.json`` first (a changed or truncated file is refused, naming it)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"load_exported: {folder} is not a folder; pass the folder `llmkt export` wrote.")
    meta = _read_json(folder / "metadata.json", "a folder without metadata.json is not a (complete) export")
    if verify:
        for fname, digest in meta.get("files", {}).items():
            if not (folder / fname).is_file():
                raise DataError(f"load_exported: {folder / fname} is missing (listed in metadata.json).")
            if sha256(folder / fname) != digest:
                raise DataError(f"load_exported: {folder / fname} differs from the file that was exported (SHA-256 "
                                "mismatch with metadata.json); it was changed or damaged. Export again, or pass "
                                "verify=False to load it anyway.")
    spec = _read_json(folder / "model.json", "it holds the model's name and parameters")
    if spec.get("format") != FORMAT or not isinstance(spec.get("format_version"), int):
        raise DataError(f"load_exported: {folder / 'model.json'} is not an llmkt export (format "
                        f"{spec.get('format')!r}, expected {FORMAT!r}).")
    if spec["format_version"] > FORMAT_VERSION:
        raise DataError(f"load_exported: {folder} has export format {spec['format_version']}, newer than this "
                        f"llmkt reads ({FORMAT_VERSION}); upgrade llmkt.")
    missing = [k for k in ("model", "params", "kind", "n_items", "n_users") if k not in spec]
    if missing:
        raise DataError(f"load_exported: {folder / 'model.json'} lacks {missing}; the file is damaged.")
    model = build_model_from_params(spec["model"], spec["params"], spec["n_items"], spec["n_users"])
    state = _read_tensors(folder / "model.safetensors")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataError(f"load_exported: {folder / 'model.safetensors'} does not fit the model of model.json "
                        f"({str(e).splitlines()[0][:200]}).") from None
    listed = set(meta.get("files", {}))
    if model.needs_graph:
        g = _read_tensors(folder / "graph.safetensors")
        model.set_graph(g["uid"], g["iid"])
    ids = _read_json(folder / "ids.json", "it maps external user and item ids to the model's rows")
    if len(ids.get("items", [])) != spec["n_items"] or len(ids.get("users", [])) != spec["n_users"]:
        raise DataError(f"load_exported: {folder / 'ids.json'} has {len(ids.get('users', []))} users and "
                        f"{len(ids.get('items', []))} items, model.json says {spec['n_users']} and {spec['n_items']}.")
    hist = _read_tensors(folder / "history.safetensors")
    titles = None
    if "items.csv" in listed:  # only files this export wrote (metadata.json lists them)
        cat = pd.read_csv(folder / "items.csv", dtype={"item_id": str}, keep_default_na=False)
        if "title" in cat.columns:
            by_id = dict(zip(cat["item_id"].astype(str), cat["title"].astype(str)))
            titles = [by_id.get(str(v), "") for v in ids["items"]]
    device = torch.device(device)
    model.to(device).eval()
    return ExportedModel(folder, model, spec, meta, ids["users"], ids["items"], hist["indptr"].numpy(),
                         hist["items"].numpy(), titles, device)
