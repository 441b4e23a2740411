"""From a validated ``RunConfig`` to a trained model and its validation/test metrics.

``train(config)`` = load and preprocess data, split, build the model, train with model selection on validation
(best checkpoint kept), then one test pass with the best weights. Everything the run produced is written to its
folder: ``config.yaml`` (resolved), ``metrics.csv`` (per epoch), ``results.json``, ``test_per_user.csv``,
``best.pt``, ``last.pt``.
"""

from __future__ import annotations

import json
import resource
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from llmkt.config import RunConfig, apply_overrides, dump_config, load_config, validate_config
from llmkt.data import Dataset, Split
from llmkt.data import columns as C
from llmkt.experiments.inputs import load_dataset, split_dataset
from llmkt.experiments.transfer import check_transfer, setup_transfer
from llmkt.data.features import build_features
from llmkt.evaluation.ctr import evaluate_ctr
from llmkt.evaluation.ranking import EvalResult, RankingProtocol, evaluate_ranking
from llmkt.evaluation.significance import paired_test
from llmkt.models.base import Recommender
from llmkt.models.registry import CTR_MODELS, build_model
from llmkt.training.batches import (CTRBatches, PairBatches, PairScorer, SequenceBatches, SequenceScorer,
                                    UserRowBatches, UserRowScorer)
from llmkt.training.callbacks import Callback, CSVLogger, EarlyStopping, MLflowLogger, TensorBoardLogger
from llmkt.training.distributed import DistContext, ShardedBatches, broadcast_text, init_distributed, rank_device
from llmkt.training.seeding import seed_everything
from llmkt.training.trainer import Trainer, resolve_device


@dataclass
class RunResult:
    config: RunConfig
    run_dir: Path
    model: Recommender
    split: Split
    valid: EvalResult
    test: EvalResult | None  # None when the run was asked not to look at test (studies choose on validation)
    history: list[dict[str, Any]]
    best_epoch: int
    timings: dict[str, float]
    transfer: dict[str, Any] | None = None
    base: "RunResult | None" = None
    model_info: dict[str, Any] = field(default_factory=dict)
    slices: dict[str, dict[str, float]] | None = None  # test metrics per slice (evaluation.slices)

    def summary(self) -> dict[str, Any]:
        out = {"dataset": self.split.dataset.name, "model": self.config.model.name, "split": self.split.kind,
               "split_summary": self.split.summary(),
               "protocol": self.valid.protocol, "best_epoch": self.best_epoch,
               "valid": self.valid.metrics, "test": self.test.metrics if self.test is not None else None,
               "timings": self.timings,
               "run_dir": str(self.run_dir)}
        if self.model_info:
            out["model_info"] = self.model_info
        if self.slices is not None:
            out["test_slices"] = self.slices
        if self.transfer is not None:
            out["transfer"] = self.transfer
        if self.base is not None and self.test is not None and self.base.test is not None:
            out["base"] = {"valid": self.base.valid.metrics, "test": self.base.test.metrics,
                           "run_dir": str(self.base.run_dir)}
            out["paired_vs_base"] = {m: paired_test(self.base.test.per_user, self.test.per_user, m).__dict__
                                     for m in ("NDCG@10", "LogLoss") if m in self.test.metrics}
        return out


def protocol_of(cfg: RunConfig) -> RankingProtocol:
    e = cfg.evaluation
    return RankingProtocol(ks=e.ks, metrics=tuple(e.metrics), exclude_seen=e.exclude_seen, kind=e.protocol,
                           n_negatives=e.n_negatives, sampler=e.sampler, seed=cfg.training.seed)


def make_batches(model: Recommender, split: Split, cfg: RunConfig):
    ds, t = split.dataset, cfg.training
    if model.kind == "user_rows":
        return UserRowBatches(split.train, ds.n_users, ds.n_items, t.batch_size, seed=t.seed)
    if model.kind == "ctr":
        return CTRBatches(split.train, t.batch_size, cfg.data.positive_rating, seed=t.seed)
    if model.kind == "pairs":
        return PairBatches(split.train, ds.n_users, ds.n_items, t.batch_size, n_negatives=model.n_negatives,
                           hist_len=model.hist_len, seed=t.seed)
    return SequenceBatches(split.train, ds.n_users, model.max_len, t.batch_size, seed=t.seed, window=t.window)


def evaluate_model(model: Recommender, split: Split, stage: str, protocol: RankingProtocol,
                   max_len: int | None = None, batch_size: int = 512,
                   device: torch.device | str = "cpu", positive_rating: float = 4.0) -> EvalResult:
    """Rank all items for every user with targets in ``stage`` ('valid' or 'test'); click-prediction models get
    AUC and LogLoss on every row of the stage instead."""
    ds = split.dataset
    if model.kind == "ctr":
        return evaluate_ctr(model, split.targets(stage), positive_rating, stage=stage, batch_size=8 * batch_size,
                            device=device, user_ids=ds.user_map.external_ids)
    model.eval()
    return evaluate_scorer(scorer_for(model, split, stage, max_len, device), split, stage, protocol, batch_size)


def scorer_for(model: Recommender, split: Split, stage: str, max_len: int | None = None,
               device: torch.device | str = "cpu"):
    """The evaluator's scorer of a ranking model for ``stage`` (``uids -> (B, n_items + 1)``), reading the stage's
    history (train for valid; train + valid for test)."""
    ds, history = split.dataset, split.history(stage)
    if model.kind == "user_rows":
        return UserRowScorer(model, history, ds.n_users, ds.n_items, device)
    if model.kind == "pairs":
        return PairScorer(model, history, ds.n_users, model.hist_len, device)
    return SequenceScorer(model, history, ds.n_users, max_len or model.max_len, device)


def evaluate_scorer(scorer, split: Split, stage: str, protocol: RankingProtocol, batch_size: int = 512) -> EvalResult:
    """Rank with any scorer (a model's, the text baseline's, an ensemble's) on ``stage``: seen items excluded."""
    ds = split.dataset
    return evaluate_ranking(scorer, split.history(stage), split.targets(stage), ds.n_users, ds.n_items, protocol,
                            batch_size=batch_size, stage=stage, user_ids=ds.user_map.external_ids)


def test_slices(cfg: RunConfig, model: Recommender, split: Split, test: EvalResult,
                device: torch.device | str = "cpu") -> dict[str, dict[str, float]] | None:
    """Test metrics per slice as ``evaluation.slices`` asks (None without slices; ranking models only)."""
    sl = cfg.evaluation.slices
    if sl is None or model.kind == "ctr":
        return None
    from dataclasses import replace

    import numpy as np

    from llmkt.evaluation.slices import evaluate_slices

    cold = None
    if sl.cold_items is not None:
        cold = split.dataset.item_map.to_internal(np.asarray(split.params["cold_items"]["item_ids"]))

    def rank_with(targets):
        return evaluate_model(model, replace(split, test=targets), "test", protocol_of(cfg), model.max_len,
                              cfg.training.eval_batch_size, device, cfg.data.positive_rating)

    return evaluate_slices(split, test, rank_with, item_popularity=sl.item_popularity,
                           user_history=tuple(sl.user_history) if sl.user_history else None, cold=cold)


def build_run_model(cfg: RunConfig, ds: Dataset, split: Split, features=None) -> tuple[Recommender, dict]:
    """The model of a run (KAR also loads its knowledge vectors) and what to report about its inputs."""
    if cfg.model.name == "kar":
        from llmkt.experiments.kar import build_kar

        return build_kar(cfg.model, ds, split, features, cfg.data.data_dir)
    model = build_model(cfg.model, ds.n_items, ds.n_users, features)
    if model.needs_graph:  # LightGCN: the training interactions are its graph
        model.set_graph(torch.tensor(split.train[C.UID].to_numpy(copy=True)),
                        torch.tensor(split.train[C.IID].to_numpy(copy=True)))
    return model, {}


def _run_dir(cfg: RunConfig) -> Path:
    name = cfg.output.name or (f"{cfg.data.name}-{cfg.model.name}-"
                               f"{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S-%f')}")
    return Path(cfg.output.dir) / name


def _label(cfg: RunConfig, role: str | None) -> str:
    if role:
        return f"{cfg.model.name} {role}"
    return f"{cfg.model.name} transfer" if cfg.transfer is not None else cfg.model.name


def train(config: RunConfig | str | Path | dict, overrides: list[str] | None = None,
          resume_from: str | Path | None = None, extra_callbacks: list[Callback] | None = None,
          data: Dataset | None = None, role: str | None = None, evaluate_test: bool = True,
          split: Split | None = None) -> RunResult | None:
    """Train and evaluate as ``config`` says; the Python twin of ``llmkt train``.

    With a ``transfer`` section, every check that needs no training runs first (:func:`check_transfer`), then the
    model is trained with knowledge transfer on its schedule; with ``transfer.compare_base`` (default) the base
    model is trained first with the same seed and both are reported.

    A run that fails before it wrote a resumable checkpoint (``last.pt``) leaves no run folder behind; one that
    fails later keeps its folder for ``llmkt train --resume``. ``evaluate_test=False`` skips the test pass (a study
    looks at test only for the points it chose on validation). ``split`` gives the split as an object (its dataset
    is the run's data; the config's ``data``/``split`` sections are then only recorded, with the split's summary).

    Started by ``torchrun --nproc_per_node N -m llmkt train CONFIG`` (``WORLD_SIZE`` > 1), the run trains with
    DistributedDataParallel (:mod:`llmkt.training.distributed`); rank 0 returns the result, the other ranks None.
    """
    if isinstance(config, dict):
        cfg = validate_config(apply_overrides(dict(config), overrides or []))
    elif isinstance(config, RunConfig):
        cfg = validate_config(apply_overrides(config.model_dump(mode="json"), overrides or [])) if overrides \
            else config
    else:
        cfg = load_config(config, overrides)
    base: RunResult | None = None
    if split is not None:
        data = split.dataset
    if cfg.transfer is not None and resume_from is None:
        data = data if data is not None else load_dataset(cfg)  # load once for both runs
        check_transfer(cfg, data, split)
        if cfg.transfer.compare_base:
            raw = cfg.model_dump(mode="json")
            raw["transfer"] = None
            raw["output"]["name"] = f"{cfg.output.name}-base" if cfg.output.name else None
            base = train(validate_config(raw), data=data, role="base", split=split)
    run_dir = Path(resume_from).parent if resume_from and Path(resume_from).is_file() else \
        Path(resume_from) if resume_from else _run_dir(cfg)
    device = resolve_device(cfg.training.device)
    ctx = init_distributed(device)
    if ctx is not None:  # rank 0 names the folder (a timestamped name differs between processes)
        run_dir = Path(broadcast_text(str(run_dir), device))
    main = ctx is None or ctx.is_main
    created = not run_dir.exists()
    try:
        result = _train_one(cfg, run_dir, resume_from, extra_callbacks, data, _label(cfg, role), evaluate_test, split,
                            ctx)
    except BaseException:
        # nothing resumable was written: do not leave a half-made folder behind (a folder with last.pt stays)
        if main and created and run_dir.exists() and not (run_dir / "last.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if result is None:  # another rank of a multi-process run: rank 0 evaluates and writes the folder
        return None
    result.base = base
    (run_dir / "results.json").write_text(json.dumps(result.summary(), indent=2))
    return result


def _train_one(cfg: RunConfig, run_dir: Path, resume_from: str | Path | None, extra_callbacks: list[Callback] | None,
               data: Dataset | None, label: str, evaluate_test: bool = True, given: Split | None = None,
               ctx: DistContext | None = None) -> RunResult | None:
    t = cfg.training
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    seed_everything(t.seed, t.deterministic)
    device = rank_device(resolve_device(t.device), ctx)
    main = ctx is None or ctx.is_main
    t0 = time.perf_counter()
    ds = data if data is not None else load_dataset(cfg)
    split = given if given is not None else split_dataset(cfg, ds)
    t_data = time.perf_counter() - t0
    features = build_features(ds) if cfg.model.name in CTR_MODELS else None
    model, model_info = build_run_model(cfg, ds, split, features)
    monitor = "AUC" if model.kind == "ctr" else t.monitor
    max_len = model.max_len
    batches = make_batches(model, split, cfg)
    if ctx is not None:  # a disjoint shard of every epoch's batches per rank
        batches = ShardedBatches(batches, ctx.rank, ctx.world_size)
    protocol = protocol_of(cfg)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        header = ""
        if given is not None:  # the split came as an object: record what it was beside the config that did not make it
            header = "# split given in Python (llmkt.train(split=...)); the data/split sections below did not make it:\n"
            header += "".join(f"#   {line}\n" for line in json.dumps(split.summary(), default=str).splitlines())
        if ctx is not None:
            header += f"# trained by {ctx.world_size} processes (DDP, {ctx.backend}); training.batch_size per process\n"
        (run_dir / "config.yaml").write_text(header + dump_config(cfg))

    def validate(m: torch.nn.Module) -> EvalResult:
        return evaluate_model(m, split, "valid", protocol, max_len, t.eval_batch_size, device,
                              cfg.data.positive_rating)

    callbacks: list[Callback] = []
    extra_params: list[torch.nn.Parameter] = []
    transfer_info = None
    if cfg.transfer is not None:  # on every rank: the hooks sit on each process's copy of the model
        setup = setup_transfer(cfg, model.to(device), split, next(iter(batches.epoch(0))), device,
                               run_dir if main else None)
        callbacks.extend(setup.callbacks)
        extra_params = setup.kt.extra_parameters()
        transfer_info = setup.info
    if main:  # logs, early stopping (its decision is broadcast) and the caller's callbacks: rank 0 only
        callbacks.append(CSVLogger(run_dir / "metrics.csv"))
        if t.patience:
            callbacks.append(EarlyStopping(monitor, t.patience))
        if "tensorboard" in cfg.output.loggers:
            callbacks.append(TensorBoardLogger(run_dir / "tensorboard"))
        if "mlflow" in cfg.output.loggers:
            callbacks.append(MLflowLogger(run_dir.name, cfg.model_dump(mode="json")))
        callbacks.extend(extra_callbacks or [])
    optimizer = torch.optim.Adam(list(model.parameters()) + extra_params, lr=t.lr, betas=t.adam_betas,
                                 weight_decay=t.weight_decay)
    trainer = Trainer(model, epochs=t.epochs, optimizer=optimizer, grad_clip=t.grad_clip,
                      monitor=monitor, eval_every=t.eval_every, callbacks=callbacks,
                      run_dir=run_dir if cfg.output.save_checkpoints and main else None, device=device,
                      progress=t.progress and main, label=label, dist=ctx, extra_params=extra_params)
    t1 = time.perf_counter()
    trainer.fit(batches, validate, resume_from=resume_from)
    t_train = time.perf_counter() - t1
    if not main:
        return None

    valid = validate(model)  # best weights are loaded by fit()
    t2 = time.perf_counter()
    test = evaluate_model(model, split, "test", protocol, max_len, t.eval_batch_size, device,
                          cfg.data.positive_rating) if evaluate_test else None
    t_test = time.perf_counter() - t2
    slices = test_slices(cfg, model, split, test, device) if test is not None else None
    epoch_s = sorted(h["epoch_seconds"] for h in trainer.history)
    timings = {"data_s": t_data, "train_s": t_train, "test_eval_s": t_test,
               "median_epoch_s": epoch_s[len(epoch_s) // 2] if epoch_s else 0.0,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    result = RunResult(cfg, run_dir, model, split, valid, test, trainer.history, trainer.best_epoch, timings,
                       transfer_info, None, model_info, slices)
    if test is not None:
        test.per_user.to_csv(run_dir / "test_per_user.csv", index=False)
    return result
