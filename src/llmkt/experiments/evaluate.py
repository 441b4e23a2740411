"""Evaluate a finished run folder (its resolved config + best checkpoint)."""

from __future__ import annotations

from pathlib import Path

import torch

from llmkt.config import load_config
from llmkt.evaluation.ranking import EvalResult
from llmkt.experiments.runner import build_run_model, evaluate_model, load_dataset, protocol_of, split_dataset
from llmkt.data.features import build_features
from llmkt.models.registry import CTR_MODELS


def evaluate_run(run_dir: str | Path, stage: str = "test") -> EvalResult:
    run = Path(run_dir)
    ckpt = run / "best.pt"
    if not ckpt.exists():
        raise FileNotFoundError(f"{ckpt} not found; was the run trained with output.save_checkpoints=true?")
    cfg = load_config(run / "config.yaml")
    ds = load_dataset(cfg)
    split = split_dataset(cfg, ds)
    features = build_features(ds) if cfg.model.name in CTR_MODELS else None
    model, _ = build_run_model(cfg, ds, split, features)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return evaluate_model(model, split, stage, protocol_of(cfg), None, cfg.training.eval_batch_size,
                          positive_rating=cfg.data.positive_rating)
