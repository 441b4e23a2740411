"""Reduction of profile vectors to a layer's width: UMAP (default), PCA, or none.

Fitted on training users only (the caller passes their vectors), seeded, and saved so the same mapping is
reused (``save``/``load``). UMAP needs the optional extra ``llmkt[umap]`` (umap-learn) to fit; a saved reducer
loads and transforms without it.

Saved reducers are arrays and a JSON header in one ``.npz``, read with ``allow_pickle=False``: nothing in the
file can run code. PCA keeps its mean and components. UMAP keeps the training inputs and their fitted embedding;
a row is mapped by the distance-weighted mean of the embeddings of its ``n_neighbors`` nearest training rows
(in UMAP's metric), and a training row maps exactly onto its own fitted embedding. That is the starting point of
umap-learn's own ``transform`` without its refinement epochs, and the same rule is used before and after
saving, so a loaded reducer gives exactly the targets of the run that fitted it. See docs/decisions.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmkt.errors import ConfigError

Method = Literal["umap", "pca", "none"]
FORMAT = "llmkt-reducer"
FORMAT_VERSION = 2  # 2: UMAP as arrays (version 1 pickled it; those files are refused)
_ARRAYS = {"pca": ("mean", "components", "explained_variance_ratio"), "umap": ("train_inputs", "embedding"),
           "none": ()}
UMAP_METRICS = ("cosine", "euclidean")
_CHUNK = 2048  # rows per block of the neighbour search (block x training rows distances in memory)


def _distances(x: np.ndarray, train: np.ndarray, metric: str) -> np.ndarray:
    """[rows, n_train] distances in ``metric``; both inputs float32 [*, d]."""
    if metric == "cosine":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        tn = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
        return np.maximum(1.0 - xn @ tn.T, 0.0)
    sq = (x ** 2).sum(1)[:, None] - 2.0 * x @ train.T + (train ** 2).sum(1)[None, :]
    return np.sqrt(np.maximum(sq, 0.0))


def knn_map(x: np.ndarray, train: np.ndarray, embedding: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Each row of ``x`` [n, d] -> the inverse-distance-weighted mean of the ``embedding`` [n_train, dim] rows of
    its ``k`` nearest ``train`` [n_train, d] rows; a row at distance 0 from a training row gets that row's
    embedding exactly."""
    k = min(k, len(train))
    out = np.empty((len(x), embedding.shape[1]), dtype=np.float32)
    for start in range(0, len(x), _CHUNK):
        d = _distances(x[start:start + _CHUNK], train, metric)  # [b, n_train]
        idx = np.argpartition(d, k - 1, axis=1)[:, :k]  # [b, k]
        dk = np.take_along_axis(d, idx, 1).astype(np.float64)
        exact = dk.min(1) <= 1e-6
        w = 1.0 / np.maximum(dk, 1e-12)
        w[exact] = (dk[exact] <= 1e-6).astype(np.float64)  # only the coinciding training row(s)
        w /= w.sum(1, keepdims=True)
        out[start:start + len(d)] = np.einsum("bk,bkd->bd", w, embedding[idx]).astype(np.float32)
    return out


@dataclass
class Reducer:
    method: Method = "umap"
    dim: int | None = None
    seed: int = 0
    umap_params: dict[str, Any] = field(default_factory=dict)
    state: dict[str, np.ndarray] | None = None
    fitted_on: int = 0

    def _umap_settings(self) -> dict[str, Any]:
        params = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", **self.umap_params}
        if params["metric"] not in UMAP_METRICS:
            raise ConfigError(f"transfer.reducer.metric: expected one of {list(UMAP_METRICS)}, got "
                              f"{params['metric']!r}.")
        return params

    def fit(self, x: np.ndarray) -> "Reducer":
        x = np.asarray(x, dtype=np.float32)
        if self.method == "none":
            self.dim = x.shape[1]
            self.state, self.fitted_on = {}, len(x)
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
            params = self._umap_settings()
            try:
                import umap
            except ImportError as e:
                raise ConfigError("transfer.reducer.method='umap' needs umap-learn: pip install 'llmkt[umap]', "
                                  "or set transfer.reducer.method: pca.") from e
            model = umap.UMAP(n_components=self.dim, random_state=self.seed, **params)
            embedding = model.fit_transform(x)
            self.state = {"train_inputs": x, "embedding": np.asarray(embedding, dtype=np.float32)}
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
        p = self._umap_settings()
        return knn_map(x, self.state["train_inputs"], self.state["embedding"], int(p["n_neighbors"]), p["metric"])

    def save(self, path: str | Path) -> Path:
        """Write the reducer to ``path`` (``.npz`` is appended when missing): arrays and a JSON header only.
        Returns the path written."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        meta: dict[str, Any] = {"format": FORMAT, "version": FORMAT_VERSION, "method": self.method, "dim": self.dim,
                                "seed": self.seed, "umap_params": self.umap_params, "fitted_on": self.fitted_on}
        arrays = {k: np.asarray(self.state[k], dtype=np.float32) for k in _ARRAYS[self.method]}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
        tmp.replace(path)
        return path

    @staticmethod
    def load(path: str | Path) -> "Reducer":
        """Read a reducer written by :meth:`save`, with ``allow_pickle=False``: no code in the file runs."""
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
        version, method = meta.get("version"), meta.get("method")
        if method not in _ARRAYS:
            raise ConfigError(f"{where}: {path}: unknown reducer method {method!r}.")
        if version == 1 and method == "umap":
            raise ConfigError(f"{where}: {path} is a UMAP reducer of format version 1, whose model is a pickle "
                              "(reducer.umap.pkl); pickles are not loaded because unpickling runs code. Refit it "
                              "(omit transfer.reducer.load): this version saves UMAP as arrays.")
        if version not in (1, FORMAT_VERSION):
            raise ConfigError(f"{where}: {path} has reducer format version {version}, this llmkt reads "
                              f"1 and {FORMAT_VERSION}; refit it.")
        missing = [k for k in _ARRAYS[method] if k not in z.files]
        if missing:
            raise ConfigError(f"{where}: {path} lacks the {method} arrays {missing}; the file is damaged, refit.")
        r = Reducer(method, meta["dim"], int(meta["seed"]), dict(meta.get("umap_params") or {}),
                    fitted_on=int(meta["fitted_on"]))
        r.state = {k: np.asarray(z[k], dtype=np.float32) for k in _ARRAYS[method]}
        if method == "umap":
            r._umap_settings()  # the metric must be one the neighbour map knows
            n, dim = r.state["embedding"].shape
            if n != len(r.state["train_inputs"]) or dim != r.dim:
                raise ConfigError(f"{where}: {path}: embedding {r.state['embedding'].shape} does not match "
                                  f"{len(r.state['train_inputs'])} training rows and dim {r.dim}; damaged, refit.")
        return r
