"""Phases of a transfer run: which epochs add the transfer loss, which parameters are frozen.

A schedule is a list of validated steps (``transfer`` then ``finetune``, as in LLM-KT), each lasting ``epochs``
or a ``fraction`` of ``training.epochs``; ``freeze`` takes parameter-name globs (``item_emb.*``, ``blocks.0.*``)
frozen during that phase only.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

from torch import nn

from llmkt.errors import ConfigError
from llmkt.training.callbacks import Callback


@dataclass(frozen=True)
class Phase:
    kind: str  # "transfer" | "finetune"
    start: int  # first epoch (1-based, inclusive)
    end: int  # last epoch (inclusive)
    freeze: tuple[str, ...] = ()
    users: float = 1.0


@dataclass(frozen=True)
class Step:
    """One step of a schedule as given: ``kind`` (transfer / finetune) lasting ``epochs`` or a ``fraction``."""

    kind: str
    epochs: int | None = None
    fraction: float | None = None
    freeze: tuple[str, ...] = ()
    users: float = 1.0


def resolve_phases(steps: list[Step], total_epochs: int) -> list[Phase]:
    """Turn steps into consecutive epoch ranges that cover exactly ``total_epochs``.

    A ``fraction`` step lasts ``floor(fraction * total + 0.5)`` epochs; the last step, if given as a fraction,
    takes whatever remains (so 0.5 / 0.5 of 5 epochs is 3 + 2).
    """
    phases, start = [], 1
    for i, st in enumerate(steps):
        if st.epochs is not None:
            n = st.epochs
        elif i == len(steps) - 1:
            n = total_epochs - (start - 1)
        else:
            n = math.floor(st.fraction * total_epochs + 0.5)
        if n < 0:
            raise ConfigError(f"transfer.schedule[{i}]: negative length.")
        phases.append(Phase(st.kind, start, start + n - 1, tuple(st.freeze), st.users))
        start += n
    if start - 1 != total_epochs:
        raise ConfigError(f"transfer.schedule: the steps last {start - 1} epochs but training.epochs is "
                          f"{total_epochs}; make them add up (epochs or fractions).")
    return [p for p in phases if p.end >= p.start]


def phase_at(phases: list[Phase], epoch: int) -> Phase:
    for p in phases:
        if p.start <= epoch <= p.end:
            return p
    raise ValueError(f"epoch {epoch} is outside the schedule")


def matching_parameters(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    names = [n for n, _ in model.named_parameters()]
    out = []
    for pat in patterns:
        hit = [n for n in names if fnmatch.fnmatchcase(n, pat) or fnmatch.fnmatchcase(n, pat + ".*")]
        if not hit:
            raise ConfigError(f"transfer.schedule.freeze: {pat!r} matches no parameter; parameters: "
                              f"{names[:40]}{' ...' if len(names) > 40 else ''}")
        out.extend(h for h in hit if h not in out)
    return out


class PhaseFreezer(Callback):
    """Sets ``requires_grad`` per phase: parameters matched by the phase's ``freeze`` globs are frozen."""

    def __init__(self, model: nn.Module, phases: list[Phase]):
        self.model, self.phases = model, phases
        self._frozen = {p: set(matching_parameters(model, p.freeze)) for p in phases}

    def on_epoch_start(self, trainer, epoch: int) -> None:
        frozen = self._frozen[phase_at(self.phases, epoch)]
        for name, p in self.model.named_parameters():
            p.requires_grad_(name not in frozen)

    def epoch_tag(self, trainer, epoch: int) -> str | None:
        return f"{phase_at(self.phases, epoch).kind} phase"

    def on_fit_end(self, trainer) -> None:
        for p in self.model.parameters():
            p.requires_grad_(True)
