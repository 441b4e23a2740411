"""Reduction of profile vectors to a layer's width: UMAP (default), PCA, or none.

Fitted on training users only (the caller passes their vectors), seeded, and saved so the same mapping is
reused (``save``/``load``). UMAP needs the optional extra ``llmkt[umap]`` (umap-learn).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmkt.errors import ConfigError

Method = Literal["umap", "pca", "none"]


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

    def save(self, path: str | Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(self, f)

    @staticmethod
    def load(path: str | Path) -> "Reducer":
        with open(path, "rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, Reducer):
            raise TypeError(f"{path} does not hold a llmkt Reducer.")
        return obj
