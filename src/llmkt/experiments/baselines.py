"""Config -> the text baselines: rank by profile text alone, and the score-sum ensemble of a trained run's model
with the text (weight chosen on validation). ``llmkt baseline text`` and :func:`text_baselines`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from llmkt.baselines.text import EnsembleScorer, TextScorer, choose_weight
from llmkt.config import VectorsConfig, load_config
from llmkt.data.vectors import check_entity
from llmkt.errors import ConfigError
from llmkt.evaluation.ranking import EvalResult
from llmkt.experiments.inputs import load_dataset, read_vectors, split_dataset

WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


@dataclass
class TextBaselines:
    text: dict[str, EvalResult]  # valid, test
    model: dict[str, EvalResult] = field(default_factory=dict)  # the run's model alone: valid, test
    ensemble: EvalResult | None = None  # test, at the weight chosen on validation
    weight: float | None = None
    curve: dict[float, float] = field(default_factory=dict)  # validation metric per weight
    metric: str = "NDCG@10"
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"metric": self.metric, "text": {k: v.metrics for k, v in self.text.items()},
                               **self.info}
        if self.model:
            out.update(model={k: v.metrics for k, v in self.model.items()}, ensemble_weight=self.weight,
                       ensemble_valid_curve=self.curve, ensemble_test=self.ensemble.metrics)
        return out


def as_vectors(source: str | dict | VectorsConfig) -> VectorsConfig:
    """A vectors section from a file path, a profile-job YAML (``*.yaml``: its store) or a mapping."""
    if isinstance(source, VectorsConfig):
        return source
    if isinstance(source, dict):
        return VectorsConfig.model_validate(source)
    return VectorsConfig(profiles=source) if str(source).endswith((".yaml", ".yml")) else VectorsConfig(path=source)


def text_baselines(user_vectors: str | dict | VectorsConfig, item_vectors: str | dict | VectorsConfig, *,
                   run_dir: str | Path | None = None, config: Any = None, overrides: list[str] | None = None,
                   weights: Sequence[float] = WEIGHTS) -> TextBaselines:
    """Text-only ranking on the split of ``run_dir`` (or of ``config``), and with ``run_dir`` the ensemble of its
    best checkpoint with the text, the weight chosen on validation ``training.monitor`` (0 = the model alone is a
    candidate), test evaluated once at that weight."""
    from llmkt.experiments.runner import evaluate_scorer, protocol_of, scorer_for

    if (run_dir is None) == (config is None):
        raise ConfigError("text baselines: give a run folder (for the ensemble too) or a config (text only).")
    model = None
    if run_dir is not None:
        from llmkt.experiments.evaluate import load_run

        cfg, ds, split, model = load_run(run_dir)
        if model.kind == "ctr":
            raise ConfigError(f"text baselines rank items; {run_dir} is a click-prediction run ({cfg.model.name}).")
    else:
        cfg = load_config(config, overrides)
        ds = load_dataset(cfg)
        split = split_dataset(cfg, ds)
    uv = read_vectors(as_vectors(user_vectors), split, cfg.data.data_dir, "user vectors")
    iv = read_vectors(as_vectors(item_vectors), split, cfg.data.data_dir, "item vectors")
    check_entity(uv, "user", "user vectors")
    check_entity(iv, "item", "item vectors")
    users, umask = uv.aligned(ds, "user")
    items, imask = iv.aligned(ds, "item")
    protocol, bs, metric = protocol_of(cfg), cfg.training.eval_batch_size, cfg.training.monitor
    text = TextScorer(users, items)
    out = TextBaselines({s: evaluate_scorer(text, split, s, protocol, bs) for s in ("valid", "test")}, metric=metric,
                        info={"user_coverage": float(umask[1:].mean()), "item_coverage": float(imask[1:].mean()),
                              "user_vectors": uv.meta, "item_vectors": iv.meta})
    if model is None:
        return out
    scorers = {s: scorer_for(model, split, s) for s in ("valid", "test")}
    out.model = {s: evaluate_scorer(scorers[s], split, s, protocol, bs) for s in ("valid", "test")}

    def valid_at(w: float) -> float:
        return evaluate_scorer(EnsembleScorer(scorers["valid"], text, w), split, "valid", protocol, bs).metrics[metric]

    out.weight, out.curve = choose_weight(valid_at, weights)
    out.ensemble = evaluate_scorer(EnsembleScorer(scorers["test"], text, out.weight), split, "test", protocol, bs)
    return out


def popularity_baseline(config: Any, overrides: list[str] | None = None) -> dict[str, EvalResult]:
    """Rank every user's unseen items by their number of training interactions (validation) or training +
    validation interactions (test), on the run config's data, split and protocol: the floor every model must
    clear."""
    from llmkt.evaluation.baselines import evaluate_popularity
    from llmkt.experiments.runner import protocol_of

    cfg = load_config(config, overrides)
    ds = load_dataset(cfg)
    split = split_dataset(cfg, ds)
    return {s: evaluate_popularity(split, s, protocol_of(cfg)) for s in ("valid", "test")}
