"""``llmkt inspect-model``: a model's layers, their output shapes on one dry training batch, and its default
transfer layer (the names ``transfer.layer`` accepts)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from llmkt.config import RunConfig
from llmkt.errors import ConfigError
from llmkt.models.registry import build_model
from llmkt.transfer import default_layer, output_shapes


@dataclass
class Inspection:
    model: str
    batch: str  # what the dry-run batch was
    default_layer: str
    layers: list[tuple[str, str, str]]  # (name, module type, output shape or why none)


def inspect_model(cfg: RunConfig, n_items: int = 100) -> Inspection:
    if cfg.model.name == "kar":
        raise ConfigError("inspect-model: KAR wraps its backbone; inspect the backbone (model.backbone) instead.")
    model = build_model(cfg.model, n_items, n_users=10)
    if model.needs_graph:  # a dry run: a random graph of 10 users
        g = torch.Generator().manual_seed(0)
        model.set_graph(torch.randint(1, 11, (50,), generator=g), torch.randint(1, n_items + 1, (50,), generator=g))
    if model.kind == "ctr":
        batch = {"uid": torch.tensor([1, 2]), "iid": torch.tensor([3, 4]), "label": torch.tensor([1.0, 0.0])}
        what = "(user, item) rows with side features: none in a dry run"
    elif model.kind == "user_rows":
        batch = {"uid": torch.tensor([1, 2]), "items": (torch.rand(2, n_items + 1) < 0.1).float()}
        what = "user rows"
    elif model.kind == "pairs":
        batch = {"uid": torch.tensor([1, 2]), "pos": torch.tensor([3, 4]),
                 "neg": torch.randint(1, n_items + 1, (2, model.n_negatives))}
        if model.hist_len:
            batch["hist"] = torch.randint(0, n_items + 1, (2, model.hist_len))
        what = f"pairs with {model.n_negatives} negatives"
    else:
        length = model.max_len
        batch = {"uid": torch.tensor([1, 2]), "seq": torch.randint(1, n_items + 1, (2, length + 1))}
        what = f"sequence length {length}"
    shapes = output_shapes(model, lambda: model.loss(batch))
    layers = [(name, type(module).__name__, str(shapes.get(name, "not called by its own forward on the training path")))
              for name, module in model.named_modules() if name]
    return Inspection(type(model).__name__, what, default_layer(model), layers)
