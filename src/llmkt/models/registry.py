"""Model registry: config -> model instance."""

from __future__ import annotations

from typing import Callable

from llmkt.errors import ConfigError
from llmkt.models.base import Recommender
from llmkt.models.bert4rec import BERT4Rec
from llmkt.models.bprmf import BPRMF
from llmkt.models.dcn import DCN
from llmkt.models.lightgcn import LightGCN
from llmkt.models.deepfm import DeepFM
from llmkt.models.multvae import MultVAE
from llmkt.models.neumf import NeuMF
from llmkt.models.sasrec import SASRec
from llmkt.models.simplex import SimpleX

_BUILDERS: dict[str, Callable[..., Recommender]] = {"sasrec": SASRec, "bert4rec": BERT4Rec, "multvae": MultVAE,
                                                    "bprmf": BPRMF, "neumf": NeuMF, "simplex": SimpleX,
                                                    "deepfm": DeepFM, "dcn": DCN, "lightgcn": LightGCN}
#: models with per-user parameters: they need the number of users
_NEEDS_USERS = {"bprmf", "neumf", "simplex", "deepfm", "dcn", "lightgcn"}
#: click-prediction models: they read side features (llmkt.data.features)
CTR_MODELS = {"deepfm", "dcn", "kar"}


def available_models() -> list[str]:
    return sorted([*_BUILDERS, "kar"])


def build_model(cfg, n_items: int, n_users: int | None = None, features=None, **extra) -> Recommender:
    """Build the model named ``cfg.name`` for ``n_items`` items (and ``n_users`` users for models with user
    embeddings; ``features``, a ``FeatureTables``, for click-prediction models)."""
    if cfg.name == "kar":
        raise ConfigError("model 'kar' needs knowledge vectors and the split: build it with "
                         "llmkt.experiments.kar.build_kar (the runner does).")
    if cfg.name not in _BUILDERS:
        raise ConfigError(f"model.name: unknown model {cfg.name!r}; available: {available_models()}.")
    return build_model_from_params(cfg.name, {**cfg.model_dump(exclude={"name"}), **extra}, n_items, n_users,
                                   features)


def build_model_from_params(name: str, params: dict, n_items: int, n_users: int | None = None,
                            features=None) -> Recommender:
    """Build model ``name`` from its keyword arguments (an exported model's ``model.json``: no config classes)."""
    if name not in _BUILDERS:
        raise ConfigError(f"model {name!r} is not one llmkt can build here; available: {sorted(_BUILDERS)}.")
    params = dict(params)
    if name in _NEEDS_USERS:
        if n_users is None:
            raise ConfigError(f"model {name!r} has user embeddings: build_model needs n_users.")
        params["n_users"] = n_users
    if name in CTR_MODELS:
        params["features"] = features
    return _BUILDERS[name](n_items=n_items, **params)
