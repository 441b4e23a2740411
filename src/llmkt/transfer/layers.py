"""Address a model's layers by name (exact, suffix or regex), like peft's ``target_modules``.

``find_layer(model, "blocks.1")`` returns ``("blocks.1", module)``; ``"re:blocks\\.\\d+\\.ffn$"`` is a regex
(fullmatch); otherwise an exact name wins, then a unique suffix match at a ``.`` boundary. When nothing or more
than one layer matches, the error lists the model's layer names.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import torch
from torch import nn

from llmkt.errors import ConfigError


def layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _listing(model: nn.Module, limit: int = 60) -> str:
    names = layer_names(model)
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return f"available layers: {shown}. `llmkt inspect-model` prints them with output shapes."


def find_layer(model: nn.Module, spec: str) -> tuple[str, nn.Module]:
    """The single module that ``spec`` names (exact name, ``.``-boundary suffix, or ``re:<regex>``)."""
    modules = dict(model.named_modules())
    modules.pop("", None)
    if spec.startswith("re:"):
        try:
            pattern = re.compile(spec[3:])
        except re.error as e:
            raise ConfigError(f"transfer.layer: invalid regex {spec[3:]!r} ({e}).") from None
        matches = [n for n in modules if pattern.fullmatch(n)]
    elif spec in modules:
        return spec, modules[spec]
    else:
        matches = [n for n in modules if n.endswith("." + spec)]
    if len(matches) == 1:
        return matches[0], modules[matches[0]]
    if not matches:
        raise ConfigError(f"transfer.layer: no layer of {type(model).__name__} matches {spec!r}; {_listing(model)}")
    raise ConfigError(f"transfer.layer: {spec!r} matches {len(matches)} layers ({matches[:10]}); name one "
                      f"exactly or use a stricter regex; {_listing(model)}")


def output_shapes(model: nn.Module, run: Callable[[], Any]) -> dict[str, tuple[int, ...] | str]:
    """Output shape of every named layer during one call of ``run()`` (a dry forward pass, no gradients)."""
    shapes: dict[str, tuple[int, ...] | str] = {}
    handles = []

    def make_hook(name: str):
        def hook(_m, _inp, out):
            if isinstance(out, torch.Tensor):
                shapes[name] = tuple(out.shape)
            elif isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
                shapes[name] = tuple(out[0].shape)
            else:
                shapes[name] = type(out).__name__
        return hook

    try:
        for name, module in model.named_modules():
            if name:
                handles.append(module.register_forward_hook(make_hook(name)))
        was_training = model.training
        model.eval()
        with torch.no_grad():
            run()
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return shapes
