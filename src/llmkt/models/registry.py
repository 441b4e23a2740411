"""Model registry: config -> model instance."""

from __future__ import annotations

from typing import Callable

from llmkt.models.base import Recommender
from llmkt.models.bert4rec import BERT4Rec
from llmkt.models.multvae import MultVAE
from llmkt.models.sasrec import SASRec

_BUILDERS: dict[str, Callable[..., Recommender]] = {"sasrec": SASRec, "bert4rec": BERT4Rec, "multvae": MultVAE}


def available_models() -> list[str]:
    return sorted(_BUILDERS)


def build_model(cfg, n_items: int) -> Recommender:
    """Build the model named ``cfg.name`` for a catalogue of ``n_items`` items."""
    if cfg.name not in _BUILDERS:
        raise ValueError(f"model.name: unknown model {cfg.name!r}; available: {available_models()}.")
    params = cfg.model_dump(exclude={"name"})
    return _BUILDERS[cfg.name](n_items=n_items, **params)
