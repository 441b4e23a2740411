"""Config -> knowledge transfer: a ``transfer:`` section becomes a :class:`~llmkt.transfer.TransferSpec`, its
``vectors`` a :class:`~llmkt.data.ProfileVectors` table; :func:`check_transfer` runs every check that needs no
training before a run's base model trains."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from llmkt.config import RunConfig, TransferConfig, TransferStep
from llmkt.data import Dataset, Split
from llmkt.experiments.inputs import read_vectors, split_dataset
from llmkt.models.base import Recommender
from llmkt.transfer import ReducerSpec, Step, TransferSetup, TransferSpec, build_transfer, plan_transfer


def normalized_model_loss(t: TransferConfig, model: Recommender | None) -> bool:
    """``transfer.normalize_model_loss`` as the run uses it: the config's value, else on for a model whose loss sums
    over items (``loss_sums_over_items``, MultVAE) unless ``dynamic_beta`` balances the terms instead (measured:
    docs/results.md, "Balancing the two terms")."""
    if t.normalize_model_loss is not None:
        return t.normalize_model_loss
    return bool(model is not None and model.loss_sums_over_items and not t.dynamic_beta)


def transfer_spec(t: TransferConfig, model: Recommender | None = None) -> TransferSpec:
    r = t.reducer
    steps = tuple(Step(st.step, st.epochs, st.fraction, tuple(st.freeze),
                       st.users if isinstance(st, TransferStep) else 1.0) for st in t.schedule)
    return TransferSpec(layer=t.layer, side=t.side, point=t.point, pooling=t.pooling, gamma=t.gamma, alignment=t.alignment,
                        loss=t.loss, alpha=t.alpha, dynamic_beta=t.dynamic_beta, temperature=t.temperature,
                        batch_rows=t.batch_rows, item_rows=t.item_rows,
                        normalize_model_loss=normalized_model_loss(t, model),
                        reducer=ReducerSpec(r.method, r.dim, r.n_neighbors, r.min_dist, r.metric, r.load),
                        steps=steps)


def item_spec(t: TransferConfig) -> TransferSpec:
    """The item side of a two-sided transfer (``transfer.item``), on the run's schedule."""
    i, r = t.item, t.item.reducer
    return TransferSpec(layer=i.layer, side="item", alignment=i.alignment, loss=i.loss, alpha=i.alpha,
                        dynamic_beta=i.dynamic_beta, temperature=i.temperature, batch_rows=i.batch_rows,
                        item_rows=i.item_rows,
                        reducer=ReducerSpec(r.method, r.dim, r.n_neighbors, r.min_dist, r.metric, r.load),
                        steps=transfer_spec(t).steps)


def setup_transfer(cfg: RunConfig, model: Recommender, split: Split, first_batch: dict[str, torch.Tensor],
                   device: torch.device, run_dir: Path | None) -> TransferSetup:
    """The callbacks of the run's transfer section (vectors read and checked against the run's split); with
    ``transfer.item`` the item side's too (its loss wraps the user side's; metrics ``kt_item/...``, reducer
    ``reducer_item.npz``)."""
    vectors = read_vectors(cfg.transfer.vectors, split, cfg.data.data_dir)
    setup = build_transfer(transfer_spec(cfg.transfer, model), model, split, vectors, first_batch, device,
                           cfg.training.epochs, cfg.training.seed, run_dir)
    if cfg.transfer.item is None:
        return setup
    items = read_vectors(cfg.transfer.item.vectors, split, cfg.data.data_dir, "transfer.item.vectors")
    second = build_transfer(item_spec(cfg.transfer), model, split, items, first_batch, device, cfg.training.epochs,
                            cfg.training.seed, run_dir, reducer_file="reducer_item.npz", log_prefix="kt_item")
    setup.callbacks.insert(1, second.kt)  # after the user side's loss, before the one phase freezer
    setup.info["item"] = second.info
    return setup


def check_transfer(cfg: RunConfig, ds: Dataset, split: Split | None = None) -> dict[str, Any]:
    """Every check of a transfer run that needs no training, run before the base model trains: the vectors file
    exists, matches the dataset and covers its users; the layer resolves and runs on the training path; the
    reducer can produce the layer's width; the schedule's freeze globs match parameters. Returns what was found
    (layer, width, coverage); raises :class:`ConfigError` / :class:`DataError` naming the key at fault."""
    from llmkt.experiments.runner import build_run_model, make_batches
    from llmkt.data.features import build_features
    from llmkt.models.registry import CTR_MODELS

    split = split if split is not None else split_dataset(cfg, ds)
    vectors = read_vectors(cfg.transfer.vectors, split, cfg.data.data_dir)
    features = build_features(ds) if cfg.model.name in CTR_MODELS else None
    with torch.random.fork_rng(devices=[]):  # building a throw-away model must not move the global random stream
        model, _ = build_run_model(cfg, ds, split, features)
        batches = make_batches(model, split, cfg)
        first = next(iter(batches.epoch(0)))
        plan = plan_transfer(transfer_spec(cfg.transfer, model), model, split, vectors, first, torch.device("cpu"),
                             cfg.training.epochs)
        out = {"layer": plan.layer_name, "layer_width": plan.width, "coverage": plan.coverage}
        if cfg.transfer.item is not None:
            items = read_vectors(cfg.transfer.item.vectors, split, cfg.data.data_dir, "transfer.item.vectors")
            ip = plan_transfer(item_spec(cfg.transfer), model, split, items, first, torch.device("cpu"),
                               cfg.training.epochs)
            out["item"] = {"layer": ip.layer_name, "layer_width": ip.width, "coverage": ip.coverage}
    return out
