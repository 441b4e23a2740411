"""Reduction of profile vectors to a layer's width: UMAP (default), PCA, or none.

Fitted on training users only (the caller passes their vectors), seeded, and saved so the same mapping is
reused (``save``/``load``). UMAP needs the optional extra ``llmkt[umap]`` (umap-learn).

Saved reducers never run code when loaded: a ``.npz`` (read with ``allow_pickle=False``) holds the arrays of PCA
and a JSON header. A fitted UMAP model has no array form that reproduces its ``transform``, so it is pickled to a
side file ``<name>.umap.pkl`` whose SHA-256 is recorded in the ``.npz``; loading it needs ``trust_pickle=True``
(``transfer.reducer.trust_pickle``) and a matching hash, because unpickling a file runs whatever code it names.
See docs/decisions.md.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmkt.errors import ConfigError

Method = Literal["umap", "pca", "none"]
FORMAT = "llmkt-reducer"
FORMAT_VERSION = 1
_PCA_ARRAYS = ("mean", "components", "explained_variance_ratio")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def umap_side_file(path: Path) -> Path:
    """Where the pickled UMAP model of the reducer saved at ``path`` lives."""
    return path.parent / (path.name.removesuffix(".npz") + ".umap.pkl")


@dataclass
class Reducer:
    method: Method = "umap"
    dim: int | None = None
    seed: int = 0
    umap_params: dict[str, Any] = field(default_factory=dict)
    state: Any = None
    fitted_on: int = 0

    def fit(self, x: np.ndarray) -> "Reducer":
        x = np.asarray(x, dtype=np.float32)
        if self.method == "none":
            self.dim = x.shape[1]
            self.state, self.fitted_on = None, len(x)
            return self
        if self.dim is None:
            raise ConfigError("transfer.reducer.dim: the output width is unknown; set it or let the transfer "
                              "callback take it from the hooked layer.")
        if self.dim > min(x.shape):
            raise ConfigError(f"transfer.reducer.dim={self.dim}: {self.method} cannot produce more dimensions than "
                              f"min(n_users, input_dim) = {min(x.shape)}; use alignment 'projection' or reduce less.")
        if self.method == "pca":
            mean = x.mean(0)
            _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
            comps = vt[: self.dim]
            # deterministic sign: the largest-magnitude loading of each component is positive
            signs = np.sign(comps[np.arange(self.dim), np.abs(comps).argmax(1)])
            self.state = {"mean": mean, "components": comps * signs[:, None],
                          "explained_variance_ratio": (s[: self.dim] ** 2 / (s ** 2).sum())}
        elif self.method == "umap":
            try:
                import umap
            except ImportError as e:
                raise ConfigError("transfer.reducer.method='umap' needs umap-learn: pip install 'llmkt[umap]', "
                                  "or set transfer.reducer.method: pca.") from e
            params = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", **self.umap_params}
            model = umap.UMAP(n_components=self.dim, random_state=self.seed, **params)
            model.fit(x)
            self.state = model
        else:
            raise ConfigError(f"transfer.reducer.method: expected umap, pca or none; got {self.method!r}.")
        self.fitted_on = len(x)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.method == "none":
            return x
        if self.state is None:
            raise RuntimeError("Reducer.transform called before fit (or load).")
        if self.method == "pca":
            return ((x - self.state["mean"]) @ self.state["components"].T).astype(np.float32)
        return np.asarray(self.state.transform(x), dtype=np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the reducer to ``path`` (``.npz`` is appended when missing); returns the path written.

        PCA and ``none`` are arrays + JSON only. UMAP also writes ``<name>.umap.pkl`` and records its SHA-256.
        """
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "method": self.method, "dim": self.dim,
                                "seed": self.seed, "umap_params": self.umap_params, "fitted_on": self.fitted_on}
        arrays: dict[str, np.ndarray] = {}
        if self.method == "pca":
            arrays = {k: np.asarray(self.state[k], dtype=np.float32) for k in _PCA_ARRAYS}
        elif self.method == "umap":
            side = umap_side_file(path)
            tmp = side.with_name(side.name + ".tmp")
            with open(tmp, "wb") as f:
                pickle.dump(self.state, f)
            tmp.replace(side)
            meta["umap_pickle"] = {"file": side.name, "sha256": _sha256(side)}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)
        return path

    @staticmethod
    def load(path: str | Path, *, trust_pickle: bool = False) -> "Reducer":
        """Read a reducer written by :meth:`save`. No code in the file runs: the ``.npz`` is read with
        ``allow_pickle=False``; a UMAP model's side file is unpickled only with ``trust_pickle=True`` and only when
        its SHA-256 matches the one recorded at save time."""
        path = Path(path)
        where = "transfer.reducer.load"
        if not path.is_file():
            raise ConfigError(f"{where}: {path} does not exist; give the reducer.npz of a finished transfer run.")
        try:
            z = np.load(path, allow_pickle=False)
            meta = json.loads(str(z["meta"])) if hasattr(z, "files") and "meta" in z.files else None
        except (ValueError, OSError, json.JSONDecodeError, EOFError) as e:
            raise ConfigError(f"{where}: {path} is not a llmkt reducer file (.npz written by Reducer.save): {e}. "
                              "Reducers pickled by llmkt 0.1 (reducer.pkl) are not loaded, because unpickling runs "
                              "code; refit (omit transfer.reducer.load) or re-save the reducer with this "
                              "version.") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ConfigError(f"{where}: {path} is a .npz but not a llmkt reducer (no '{FORMAT}' header).")
        if meta.get("version") != FORMAT_VERSION:
            raise ConfigError(f"{where}: {path} has reducer format version {meta.get('version')}, this llmkt reads "
                              f"{FORMAT_VERSION}; refit it.")
        r = Reducer(meta["method"], meta["dim"], int(meta["seed"]), dict(meta.get("umap_params") or {}),
                    fitted_on=int(meta["fitted_on"]))
        if r.method == "pca":
            missing = [k for k in _PCA_ARRAYS if k not in z.files]
            if missing:
                raise ConfigError(f"{where}: {path} lacks the PCA arrays {missing}; the file is damaged, refit.")
            r.state = {k: np.asarray(z[k], dtype=np.float32) for k in _PCA_ARRAYS}
        elif r.method == "umap":
            side = path.parent / str(meta["umap_pickle"]["file"])
            if Path(meta["umap_pickle"]["file"]).name != meta["umap_pickle"]["file"]:
                raise ConfigError(f"{where}: {path} names a UMAP side file outside its folder; refused.")
            if not trust_pickle:
                raise ConfigError(f"{where}: {path} is a UMAP reducer; its model is the pickle {side.name}, and "
                                  "unpickling a file runs code. Load it only if you made it or trust its author: set "
                                  "transfer.reducer.trust_pickle: true (its SHA-256 is checked first), or refit.")
            if not side.is_file():
                raise ConfigError(f"{where}: the UMAP model {side} is missing; keep it next to {path.name}.")
            digest = _sha256(side)
            if digest != meta["umap_pickle"]["sha256"]:
                raise ConfigError(f"{where}: {side} has SHA-256 {digest[:16]}…, not the {meta['umap_pickle']['sha256'][:16]}… "
                                  "recorded when it was saved: the file was changed; refused without unpickling.")
            with open(side, "rb") as f:
                r.state = pickle.load(f)  # trusted by the user and unchanged since it was saved
        elif r.method != "none":
            raise ConfigError(f"{where}: {path}: unknown reducer method {r.method!r}.")
        return r
