"""Knowledge transfer for a model, from objects: a :class:`TransferSpec`, the model, the split, the vectors.

Steps: align the vectors to the dataset; find the target layer (or take the model's default); read the layer's
width from one dry forward pass on a training batch; fit the reducer on training users' vectors only (seeded) and
save it; build the ``KnowledgeTransfer`` and ``PhaseFreezer`` callbacks for the schedule. :func:`plan_transfer` does
every check of that without fitting or training, so a run can fail before its base model trains.
(``llmkt.experiments.transfer`` turns a ``transfer:`` config section into these objects.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from llmkt.data import columns as C
from llmkt.data.splits import Split
from llmkt.data.vectors import ProfileVectors
from llmkt.errors import ConfigError, LLMKTWarning
from llmkt.models.base import Recommender
from llmkt.transfer.callback import ItemKnowledgeTransfer, KnowledgeTransfer, TransferSettings, item_table, item_tables
from llmkt.transfer.layers import find_layer
from llmkt.transfer.reduce import Reducer
from llmkt.transfer.schedule import Phase, PhaseFreezer, Step, phase_at, resolve_phases

#: below this share of users with a vector, a transfer run warns (vectors for another split or dataset?)
LOW_COVERAGE = 0.5

#: Default target layer per model (used when ``transfer.layer`` is omitted). A callable gets the model.
DEFAULT_LAYERS: dict[str, str | Callable[[nn.Module], str]] = {
    "SASRec": lambda m: f"blocks.{len(m.blocks) - 1}",
    "BERT4Rec": lambda m: f"blocks.{len(m.blocks) - 1}",
    "MultVAE": "mu",
    "BPRMF": "user_emb",
    "LightGCN": "user_out",
    "NeuMF": lambda m: f"mlp.{len(m.mlp) - 1}",
    "SimpleX": "fuse",
    "DeepFM": lambda m: f"dnn.{len(m.dnn) - 1}",
    "DCN": lambda m: f"dnn.{len(m.dnn) - 1}",
}


#: Default item table per model for ``transfer.side: item``.
DEFAULT_ITEM_LAYERS: dict[str, str | Callable[[nn.Module], str]] = {
    "SASRec": "item_emb",
    "BERT4Rec": "item_emb",
    "MultVAE": lambda m: f"decoder.{len(m.decoder) - 1}",
    "BPRMF": "item_emb",
    "LightGCN": "item_emb",
    "NeuMF": "item_gmf",
    "SimpleX": "item_emb",
}


def default_layer(model: nn.Module, side: str = "user") -> str:
    table = DEFAULT_ITEM_LAYERS if side == "item" else DEFAULT_LAYERS
    entry = table.get(type(model).__name__)
    if entry is None:
        what = "item table" if side == "item" else "target layer"
        raise ConfigError(f"transfer.layer: {type(model).__name__} has no default {what}; name one "
                          "(`llmkt inspect-model` lists them).")
    return entry(model) if callable(entry) else entry


def layer_width(model: Recommender, layer: nn.Module, batch: dict[str, torch.Tensor], point: str) -> int:
    """Width of the layer's output (or input) on the training path, from one forward pass without gradients."""
    seen: dict[str, int] = {}

    def hook(_m, inputs, output):
        value = output if point == "output" else inputs[0]
        value = value[0] if isinstance(value, (tuple, list)) else value
        seen["width"] = int(value.shape[-1])

    handle = layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            model.loss(batch)
    finally:
        handle.remove()
    if "width" not in seen:
        raise ConfigError("transfer.layer: the layer did not run in model.loss(batch); choose a layer on the "
                          "training path.")
    return seen["width"]


@dataclass(frozen=True)
class ReducerSpec:
    method: str = "umap"  # umap | pca | none
    dim: int | None = None  # default: the layer's width
    n_neighbors: int = 15
    min_dist: float = 0.1
    metric: str = "cosine"
    load: str | None = None  # a saved reducer.npz to reuse instead of fitting


@dataclass(frozen=True)
class TransferSpec:
    """What to transfer where, how and when (the object form of a ``transfer:`` config section)."""

    layer: str | None = None  # exact name, suffix or re:<regex>; None: the model's default
    side: str = "user"  # user: a layer's output per batch user; item: an item table's rows per batch item
    point: str = "output"
    pooling: str = "mean"
    gamma: float = 0.9
    alignment: str = "fixed"
    loss: str = "rmse"
    alpha: float = 0.5
    dynamic_beta: bool = False
    normalize_model_loss: bool = False
    temperature: float = 0.1  # infonce
    batch_rows: int | None = None  # infonce / relational: distinct rows per batch at most (a sample)
    item_rows: str = "batch"  # item side: the batch's items, or all items with a vector (cold items included)
    reducer: ReducerSpec = field(default_factory=ReducerSpec)
    steps: tuple[Step, ...] = (Step("transfer", fraction=0.5), Step("finetune", fraction=0.5))


@dataclass
class TransferPlan:
    """Everything a transfer run needs that can be checked before any training: the vectors aligned to the
    dataset, the target layer and its width, the reducer's output width and the users it is fitted on."""

    vectors: ProfileVectors
    raw: np.ndarray  # (n_users + 1, d_in)
    has_vec: np.ndarray  # (n_users + 1,)
    coverage: float
    layer_name: str
    layer: nn.Module
    width: int
    dim: int
    fit_rows: np.ndarray
    reducer: Reducer | None  # loaded (transfer.reducer.load) or None: to be fitted
    phases: list[Phase]


def plan_transfer(spec: TransferSpec, model: Recommender, split: Split, vectors: ProfileVectors,
                  first_batch: dict[str, torch.Tensor], device: torch.device, epochs: int) -> TransferPlan:
    """Check a transfer against the data and the model without training: the vectors cover users of the dataset,
    the layer resolves and runs on the training path, the reducer can produce the width, the schedule fits
    ``epochs`` and its freeze globs match. Raises :class:`ConfigError` naming the key at fault."""
    t = spec
    ds = split.dataset
    if t.side not in ("user", "item"):
        raise ConfigError(f"transfer.side: expected user or item, got {t.side!r}.")
    if t.item_rows not in ("batch", "all"):
        raise ConfigError(f"transfer.item_rows: expected batch or all, got {t.item_rows!r}.")
    if t.item_rows != "batch" and t.side != "item":
        raise ConfigError(f"transfer.item_rows: {t.item_rows!r} applies to the item side (transfer.side: item).")
    item = t.side == "item"
    who, n_who, ids_of = ("item", ds.n_items, ds.item_map) if item else ("user", ds.n_users, ds.user_map)
    if vectors.meta.get("entity", who) != who:
        raise ConfigError(f"transfer.vectors: these are {vectors.meta['entity']} vectors but transfer.side is "
                          f"{t.side!r}; set transfer.side: {vectors.meta['entity']}.")
    raw, has_vec = vectors.aligned(ds, who)  # (n + 1, d_in), (n + 1,) by internal id
    coverage = float(has_vec[1:].mean())
    if coverage == 0:
        raise ConfigError(f"transfer.vectors: none of the {len(vectors.user_ids)} vectors matches a {who} of "
                          f"{ds.name} (ids like {vectors.user_ids[:3].tolist()} vs {ids_of.external_ids[:3]}).")
    if coverage < LOW_COVERAGE:
        warnings.warn(f"transfer.vectors: only {coverage:.1%} of the {n_who} {who}s of {ds.name} have a vector "
                      f"({vectors.meta.get('source', 'vectors')}); the others get no transfer loss. Check that the "
                      "vectors were made for this dataset and split.", LLMKTWarning, stacklevel=2)
    spec = t.layer or default_layer(model, t.side)
    layer_name, layer = find_layer(model, spec)
    # The dry run must not consume the global random stream: with alpha = 0 a transfer run is then identical to the
    # base run, so differences come from the transfer alone.
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    if item:
        table = item_table(layer, ds.n_items)
        if table is None:
            raise ConfigError(f"transfer.layer: {layer_name!r} ({type(layer).__name__}) is no item table for "
                              f"transfer.side=item; item tables of {type(model).__name__}: "
                              f"{item_tables(model, ds.n_items)}.")
        width = int(table.shape[1])
    else:
        with torch.random.fork_rng(devices=rng_devices):
            width = layer_width(model, layer, {k: v.to(device) for k, v in first_batch.items()}, t.point)
    dim = t.reducer.dim or width
    if t.alignment == "fixed" and dim != width:
        raise ConfigError(f"transfer.reducer.dim={dim} but alignment 'fixed' needs the layer width {width} of "
                          f"{layer_name!r}; drop transfer.reducer.dim or use alignment 'projection'.")
    # The reducer is fitted on training users (items) with a vector, only.
    train_ids = np.unique(split.train[C.IID if item else C.UID].to_numpy())
    fit_rows = train_ids[has_vec[train_ids]]
    reducer = None
    if t.reducer.load:
        reducer = Reducer.load(t.reducer.load)
        if reducer.dim != dim and t.alignment == "fixed":
            raise ConfigError(f"transfer.reducer.load: the saved reducer outputs {reducer.dim} dimensions, the "
                              f"layer is {dim} wide.")
    elif t.reducer.method != "none":
        limit = min(len(fit_rows), vectors.dim)
        if dim > limit:
            raise ConfigError(f"transfer.reducer: {t.reducer.method} cannot give {dim} dimensions (the width of "
                              f"{layer_name!r}) from {len(fit_rows)} training {who}s x {vectors.dim} input dims (at "
                              f"most {limit}); use transfer.alignment: projection with a smaller transfer.reducer.dim,"
                              " or vectors with more dimensions.")
        if t.reducer.method == "umap":
            try:
                import umap  # noqa: F401
            except ImportError:
                raise ConfigError("transfer.reducer.method='umap' needs umap-learn: pip install 'llmkt[umap]', "
                                  "or set transfer.reducer.method: pca.") from None
    phases = resolve_phases(list(t.steps), epochs)
    PhaseFreezer(model, phases)  # checks every freeze glob against the model's parameters
    return TransferPlan(vectors, raw, has_vec, coverage, layer_name, layer, width, dim, fit_rows, reducer, phases)


@dataclass
class TransferSetup:
    callbacks: list
    kt: KnowledgeTransfer
    phases: list[Phase]
    reducer: Reducer
    coverage: float
    info: dict[str, Any]


def build_transfer(spec: TransferSpec, model: Recommender, split: Split, vectors: ProfileVectors,
                   first_batch: dict[str, torch.Tensor], device: torch.device, epochs: int, seed: int,
                   run_dir: Path | None = None, *, reducer_file: str = "reducer.npz",
                   log_prefix: str = "kt") -> TransferSetup:
    """The callbacks of a transfer run (see the module docstring); the fitted reducer is saved in ``run_dir``."""
    t = spec
    ds = split.dataset
    plan = plan_transfer(spec, model, split, vectors, first_batch, device, epochs)
    raw, has_vec, fit_rows, width = plan.raw, plan.has_vec, plan.fit_rows, plan.width
    layer_name, vectors, coverage = plan.layer_name, plan.vectors, plan.coverage
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    reducer = plan.reducer
    if reducer is None:
        reducer = Reducer(t.reducer.method, None if t.reducer.method == "none" else plan.dim, seed,
                          {"n_neighbors": t.reducer.n_neighbors, "min_dist": t.reducer.min_dist,
                           "metric": t.reducer.metric})
        reducer.fit(raw[fit_rows])
    targets = np.zeros((len(raw), reducer.dim), dtype=np.float32)  # by internal uid (iid for the item side)
    targets[has_vec] = reducer.transform(raw[has_vec])
    if run_dir is not None:
        reducer.save(run_dir / reducer_file)
    phases = plan.phases
    mask = has_vec.copy()
    transfer_phases = [p for p in phases if p.kind == "transfer"]
    share = min((p.users for p in transfer_phases), default=1.0)
    if share < 1.0:  # a seeded subset of training users takes part in the transfer loss
        rng = np.random.default_rng(seed)
        chosen = rng.choice(fit_rows, size=max(1, int(round(share * len(fit_rows)))), replace=False)
        mask = np.zeros_like(has_vec)
        mask[chosen] = True

    settings = TransferSettings(layer=layer_name, point=t.point, pooling=t.pooling, gamma=t.gamma,
                                alignment=t.alignment, loss=t.loss, alpha=t.alpha, dynamic_beta=t.dynamic_beta,
                                normalize_model_loss=t.normalize_model_loss, temperature=t.temperature,
                                batch_rows=t.batch_rows)
    active = lambda epoch: phase_at(phases, epoch).kind == "transfer"  # noqa: E731
    if t.side == "item":
        kt = ItemKnowledgeTransfer(model, torch.from_numpy(targets), torch.from_numpy(mask), settings,
                                   active=active, log_prefix=log_prefix, n_items=ds.n_items,
                                   rows=t.item_rows)
    else:
        kt = KnowledgeTransfer(model, torch.from_numpy(targets), torch.from_numpy(mask), settings, active=active,
                               sequence_mask=model.sequence_mask, log_prefix=log_prefix)
    with torch.random.fork_rng(devices=rng_devices):
        kt.build(width, device)
    info = {"side": t.side, "layer": layer_name, "layer_width": width, "vector_dim_in": vectors.dim, "vector_dim": reducer.dim,
            "reducer": reducer.method, "reducer_fitted_on": reducer.fitted_on, "coverage": coverage,
            f"transfer_{t.side}s": int(mask.sum()),
            "phases": [p.__dict__ for p in phases], "vectors_meta": vectors.meta,
            "dynamic_beta": t.dynamic_beta, "normalize_model_loss": t.normalize_model_loss,
            **({"item_rows": t.item_rows} if t.side == "item" else {})}
    return TransferSetup([kt, PhaseFreezer(model, phases)], kt, phases, reducer, coverage, info)
