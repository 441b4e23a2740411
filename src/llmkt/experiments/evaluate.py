"""Evaluate a finished run folder (its resolved config + best checkpoint)."""

from __future__ import annotations

from pathlib import Path

from llmkt.config import load_config
from llmkt.errors import DataError
from llmkt.training.checkpoint import load_checkpoint
from llmkt.evaluation.ranking import EvalResult
from llmkt.experiments.inputs import load_dataset, split_dataset
from llmkt.experiments.runner import build_run_model, evaluate_model, protocol_of, test_slices
from llmkt.data.features import build_features
from llmkt.models.registry import CTR_MODELS


def evaluate_run(run_dir: str | Path, stage: str = "test", *, allow_unfinished: bool = False) -> EvalResult:
    """Metrics of the best checkpoint of a finished run folder on its split. A run that stopped before the end
    (no ``results.json``) is refused unless ``allow_unfinished`` (then its best checkpoint so far is used)."""
    cfg, ds, split, model = load_run(run_dir, allow_unfinished=allow_unfinished)
    result = evaluate_model(model, split, stage, protocol_of(cfg), None, cfg.training.eval_batch_size,
                            positive_rating=cfg.data.positive_rating)
    if stage == "test":
        result.extra["slices"] = test_slices(cfg, model, split, result)
    return result


def load_run(run_dir: str | Path, *, allow_unfinished: bool = False):
    """``(config, dataset, split, model)`` of a run folder, the model at its best checkpoint (refusals as in
    :func:`evaluate_run`)."""
    run = Path(run_dir)
    ckpt = run / "best.pt"
    if not (run / "config.yaml").is_file():
        raise DataError(f"{run} is not a run folder: it has no config.yaml. Pass the folder `llmkt train` printed "
                        "(runs/<dataset>-<model>-<time>).")
    cfg = load_config(run / "config.yaml")
    if not ckpt.exists():
        if not cfg.output.save_checkpoints:
            raise DataError(f"{run}: the run was trained with output.save_checkpoints=false, so it has no best.pt "
                            "to evaluate; its test metrics are in results.json.")
        if not (run / "results.json").exists():
            hint = (f"it stopped before finishing; resume it with `llmkt train --resume {run}`"
                    if (run / "last.pt").exists() else "it stopped before its first validation")
            raise DataError(f"{run}: no finished run here (no best.pt, no results.json): {hint}.")
        raise DataError(f"{ckpt} is missing although the run finished; it was deleted or moved.")
    if not (run / "results.json").exists() and not allow_unfinished:
        raise DataError(f"{run}: no finished run here (no results.json): it stopped before the end; resume it with "
                        f"`llmkt train --resume {run}`, or pass --allow-unfinished to evaluate its best checkpoint so "
                        "far.")
    ds = load_dataset(cfg)
    split = split_dataset(cfg, ds)
    features = build_features(ds) if cfg.model.name in CTR_MODELS else None
    model, _ = build_run_model(cfg, ds, split, features)
    state = load_checkpoint(ckpt, "evaluate")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError) as e:
        raise DataError(f"evaluate: {ckpt} does not fit the model of {run / 'config.yaml'} "
                        f"({str(e).splitlines()[0][:200]}); was config.yaml edited after training?") from None
    model.eval()
    return cfg, ds, split, model
