"""``KnowledgeTransfer``: the LLM-KT auxiliary loss as a training callback.

While a transfer phase is active, a forward hook on the named layer captures its output (or input); ``on_loss``
pools it over positions (3-D outputs), aligns it to the profile-vector space and adds

    L = alpha * beta * L_kt + (1 - alpha) * L_model,   beta = detach(L_model / L_kt) if dynamic_beta else 1;
    with normalize_model_loss, L_model / detach(|L_model|) stands for L_model (value 1, the model's gradient divided
    by its loss: a model loss in the hundreds no longer drowns L_kt).

The hook exists only during active phases and is removed when a phase ends, when training ends and when
training fails (``on_fit_end`` runs in the trainer's ``finally``). The model's own code is never changed, so the
trained model serves exactly like the base model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from llmkt.errors import ConfigError, LLMKTWarning
from llmkt.training.callbacks import Callback
from llmkt.transfer.alignment import Alignment, batch_loss
from llmkt.transfer.layers import find_layer
from llmkt.transfer.pooling import AttentionPool, last_position, masked_mean, recency_pool


@dataclass
class TransferSettings:
    layer: str
    point: str = "output"  # or "input"
    pooling: str = "mean"  # mean | recency | attention | last
    gamma: float = 0.9
    alignment: str = "fixed"  # fixed | slice | projection
    loss: str = "rmse"  # rmse | mse | cosine | infonce | relational
    alpha: float = 0.5
    dynamic_beta: bool = False
    normalize_model_loss: bool = False  # L_model / detach(|L_model|): value 1, gradient grad(L_model) / |L_model|
    temperature: float = 0.1  # infonce
    batch_rows: int | None = None  # infonce / relational: a sample of at most this many distinct rows per batch


@dataclass
class _EpochStats:
    model: float = 0.0
    kt: float = 0.0
    beta: float = 0.0
    term: float = 0.0  # alpha * beta * L_kt
    total: float = 0.0  # the combined loss
    covered: int = 0
    users: int = 0
    steps: int = 0

    def add(self, model: torch.Tensor, scaled: torch.Tensor, kt: torch.Tensor, beta: torch.Tensor, alpha: float,
            covered: int, rows: int) -> torch.Tensor:
        """``model``: L_model as the model computed it (logged); ``scaled``: the term that enters the total (L_model,
        or L_model / |L_model| with ``normalize_model_loss``)."""
        total = alpha * beta * kt + (1.0 - alpha) * scaled
        self.model += float(model.detach())
        self.kt += float(kt.detach())
        self.beta += float(beta)
        self.term += float((alpha * beta * kt).detach())
        self.total += float(total.detach())
        self.covered += covered
        self.users += rows
        self.steps += 1
        return total


#: below this share of the combined loss the transfer term is too small to matter: the run warns
SMALL_SHARE = 0.01
#: above this ratio of beta * L_kt to the model term, alpha no longer says how the two mix: the run warns (on
#: amazon-book, static-beta InfoNCE at alpha 0.1 weighed 3.5-6x BPR's loss and cost a fifth of LightGCN's NDCG)
LARGE_RATIO = 3.0


@dataclass
class KnowledgeTransfer(Callback):
    """Adds the transfer loss on epochs where ``active(epoch)`` is true.

    ``targets``: ``(n_users + 1, d)`` profile vectors by internal uid; ``mask``: ``(n_users + 1,)`` bool, False for
    users without a vector (and users outside the transfer subset). ``sequence_mask(batch)`` gives the ``(B, L)``
    real-position mask of the hooked layer's 3-D output.
    """

    model: nn.Module
    targets: torch.Tensor
    mask: torch.Tensor
    settings: TransferSettings
    active: Callable[[int], bool] = lambda epoch: True
    sequence_mask: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None
    log_prefix: str = "kt"  # metrics.csv columns <prefix>/L_kt, ...; kt_item for the second side of a run
    layer_name: str = field(init=False, default="")
    _handle: Any = field(init=False, default=None)
    _captured: torch.Tensor | None = field(init=False, default=None)
    _stats: _EpochStats = field(init=False, default_factory=_EpochStats)
    _on: bool = field(init=False, default=False)
    _warned: bool = field(init=False, default=False)
    _warned_large: bool = field(init=False, default=False)
    modules: nn.ModuleDict = field(init=False)

    def __post_init__(self) -> None:
        s = self.settings
        if s.point not in ("output", "input"):
            raise ConfigError(f"transfer.point: expected output or input, got {s.point!r}.")
        if s.pooling not in ("mean", "recency", "attention", "last"):
            raise ConfigError(f"transfer.pooling: expected mean, recency, attention or last, got {s.pooling!r}.")
        if not 0.0 <= s.alpha <= 1.0:
            raise ConfigError(f"transfer.alpha: expected a value in [0, 1], got {s.alpha}.")
        self.layer_name, self.layer = find_layer(self.model, s.layer)
        self.modules = nn.ModuleDict()

    # -- set-up: width of the layer, pooling/alignment parameters -------------------------------------------------
    def build(self, width: int, device: torch.device | str = "cpu") -> None:
        """Create the alignment (and attention pooling) for a layer of ``width``; call before training."""
        s = self.settings
        self.modules["align"] = Alignment(s.alignment, width, self.targets.shape[1])
        if s.pooling == "attention":
            self.modules["pool"] = AttentionPool(width)
        self.modules.to(device)
        self.targets, self.mask = self.targets.to(device), self.mask.to(device)

    def extra_parameters(self) -> list[nn.Parameter]:
        return list(self.modules.parameters())

    # -- hook --------------------------------------------------------------------------------------------------
    def _hook(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        if not module.training:  # validation/scoring passes are not part of the transfer loss
            return
        value = output if self.settings.point == "output" else inputs[0]
        self._captured = value[0] if isinstance(value, (tuple, list)) else value

    def attach(self) -> None:
        if self._handle is None:
            self._handle = self.layer.register_forward_hook(self._hook)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self._captured = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    # -- callback ----------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer) -> None:
        if "align" not in self.modules:
            raise RuntimeError("KnowledgeTransfer.build(width) must be called before training.")
        extra = [p for p in self.extra_parameters() if p.requires_grad]
        known = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        if extra and not any(id(p) in known for p in extra):
            trainer.optimizer.add_param_group({"params": extra})

    def set_active(self, on: bool) -> None:
        """Switch the transfer loss (and its hook) on or off."""
        self._on = bool(on)
        if self._on:
            self.attach()
        else:
            self.detach()

    def on_epoch_start(self, trainer, epoch: int) -> None:
        self._stats = _EpochStats()
        self.set_active(self.active(epoch))

    def pooled(self, h: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if h.dim() == 2:
            return h
        if h.dim() != 3:
            raise RuntimeError(f"transfer: layer {self.layer_name!r} gave a {h.dim()}-D output; expected 2-D or 3-D.")
        m = self.sequence_mask(batch) if self.sequence_mask is not None else None
        if m is None:
            raise RuntimeError("transfer: a 3-D layer output needs the model's sequence_mask(batch) for pooling; "
                               f"{type(self.model).__name__} returns none (Recommender.sequence_mask).")
        if m.shape != h.shape[:2]:
            raise RuntimeError(f"transfer: mask shape {tuple(m.shape)} does not match the layer output "
                               f"{tuple(h.shape)}; the layer's positions differ from the batch's sequence.")
        p = self.settings.pooling
        if p == "mean":
            return masked_mean(h, m)
        if p == "recency":
            return recency_pool(h, m, self.settings.gamma)
        if p == "last":
            return last_position(h, m)
        return self.modules["pool"](h, m)

    def transfer_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        h = self._captured
        if h is None:
            raise RuntimeError(f"transfer: layer {self.layer_name!r} did not run in model.loss(batch); pick a layer "
                               "on the training path.")
        z = self.modules["align"](self.pooled(h, batch))  # (B, d)
        uid = batch["uid"]
        m = self.mask[uid]
        s = self.settings
        return batch_loss(z, self.targets[uid], m, uid, s.loss, s.temperature, s.batch_rows), int(m.sum())

    def on_loss(self, trainer, batch: dict[str, torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        if not self._on:
            return loss
        l_kt, covered = self.transfer_loss(batch)
        self._captured = None
        return self.combine(loss, l_kt, covered, int(batch["uid"].shape[0]))

    def combine(self, loss: torch.Tensor, l_kt: torch.Tensor, covered: int, rows: int) -> torch.Tensor:
        """``alpha * beta * L_kt + (1 - alpha) * L_model`` with this run's beta and model-loss scaling."""
        s = self.settings
        scaled = loss / loss.detach().abs().clamp(min=1e-12) if s.normalize_model_loss else loss
        beta = (scaled.detach() / l_kt.detach()).clamp(max=1e6) if (s.dynamic_beta and covered) else \
            loss.new_tensor(1.0)
        return self._stats.add(loss, scaled, l_kt, beta, s.alpha, covered, rows)

    def epoch_logs(self, trainer) -> dict[str, float]:
        st = self._stats
        if not self._on or st.steps == 0:
            return {f"{self.log_prefix}/active": 0.0}
        share = st.term / st.total if st.total > 0 else 0.0
        if 0 < self.settings.alpha and share < SMALL_SHARE and not self._warned:
            self._warned = True
            norm = self.settings.normalize_model_loss
            fixes = "raise alpha" if self.settings.dynamic_beta else (
                "set transfer.dynamic_beta: true (beta = L_model / L_kt), or raise alpha" if norm else
                "set transfer.dynamic_beta: true (beta = L_model / L_kt) or transfer.normalize_model_loss: true, "
                "or raise alpha")
            warnings.warn(f"transfer: alpha * beta * L_kt is {share:.2%} of the training loss (L_model "
                          f"{st.model / st.steps:.4g}{', normalised to 1' if norm else ''}, L_kt "
                          f"{st.kt / st.steps:.4g}): the transfer term hardly moves the model; {fixes}.",
                          LLMKTWarning, stacklevel=2)
        alpha = self.settings.alpha
        model_term = st.total - st.term
        ratio = (st.term / alpha) / (model_term / (1 - alpha)) if 0 < alpha < 1 and model_term > 0 else 0.0
        if ratio > LARGE_RATIO and not self._warned_large:
            self._warned_large = True
            warnings.warn(f"transfer: beta * L_kt is {ratio:.1f}x the model loss (L_model {st.model / st.steps:.4g}, "
                          f"L_kt {st.kt / st.steps:.4g}), so alpha {alpha:g} gives the transfer term {share:.0%} of the "
                          f"training loss, not about {alpha:.0%}: it may drown the model's own objective. Set "
                          "transfer.dynamic_beta: true (beta = L_model / L_kt, the share is then alpha) or lower alpha.",
                          LLMKTWarning, stacklevel=2)
        p = self.log_prefix
        return {f"{p}/active": 1.0, f"{p}/L_model": st.model / st.steps, f"{p}/L_kt": st.kt / st.steps,
                f"{p}/beta": st.beta / st.steps, f"{p}/share": share, f"{p}/coverage": st.covered / max(st.users, 1)}

    def on_fit_end(self, trainer) -> None:
        self.detach()

    def state_dict(self) -> dict[str, Any]:
        return {"modules": self.modules.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.modules.load_state_dict(state["modules"])


#: batch keys that hold item ids (the framework's batches: pairs, sequences, click rows, user rows, histories)
ITEM_ID_KEYS = ("pos", "neg", "seq", "iid", "hist")


def item_table(module: nn.Module, n_items: int) -> torch.Tensor | None:
    """The ``(n_items + 1, d)`` item table a module holds: an ``Embedding`` with ``n_items + 1`` rows (``+ 1`` for a
    mask token, BERT4Rec), or a ``Linear`` with ``n_items + 1`` outputs (its weight rows, e.g. an output layer over
    items); else None."""
    if isinstance(module, nn.Embedding) and module.num_embeddings in (n_items + 1, n_items + 2):  # + a mask token
        return module.weight[: n_items + 1]
    if isinstance(module, nn.Linear) and module.out_features == n_items + 1:
        return module.weight
    return None


def batch_items(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The distinct item ids (padding 0 left out) a training batch touches."""
    parts = [batch[k].reshape(-1) for k in ITEM_ID_KEYS if k in batch]
    if "items" in batch:  # user rows (MultVAE): a multi-hot (B, n_items + 1)
        parts.append(torch.nonzero(batch["items"].sum(0) > 0).reshape(-1))
    if not parts:
        raise RuntimeError(f"transfer.side=item: the batch holds no item ids (keys {sorted(batch)}).")
    ids = torch.unique(torch.cat(parts).long())
    return ids[ids > 0]


@dataclass
class ItemKnowledgeTransfer(KnowledgeTransfer):
    """The transfer loss on the item side: the rows of an item table (``transfer.layer``, e.g. ``item_emb``) for the
    items of each batch (``rows="batch"``) or for every item with a vector (``rows="all"``: items that no batch
    holds, cold items, are aligned too) reconstruct the items' profile vectors. ``targets``/``mask`` are indexed by
    internal iid; items without a vector contribute nothing. No hook: the table's rows are read directly, so L_kt's
    gradient reaches only those rows (and the alignment)."""

    n_items: int = 0
    rows: str = "batch"  # batch | all
    _all_ids: torch.Tensor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rows not in ("batch", "all"):
            raise ConfigError(f"transfer.item_rows: expected batch or all, got {self.rows!r}.")
        if item_table(self.layer, self.n_items) is None:
            raise ConfigError(f"transfer.side=item: layer {self.layer_name!r} ({type(self.layer).__name__}) is no "
                              f"item table; name an Embedding with {self.n_items + 1} rows or a Linear with "
                              f"{self.n_items + 1} outputs: {item_tables(self.model, self.n_items)}.")

    def attach(self) -> None:  # rows are read directly: nothing to hook
        self._handle = True

    def detach(self) -> None:
        self._handle = None
        self._captured = None

    def build(self, width: int, device: torch.device | str = "cpu") -> None:
        super().build(width, device)
        ids = torch.nonzero(self.mask[: self.n_items + 1]).reshape(-1)  # every item with a vector: fixed, so once
        self._all_ids = ids[ids > 0]

    def step_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The internal item ids whose rows enter this step's transfer loss."""
        if self.rows == "all":
            return self._all_ids
        ids = batch_items(batch)
        return ids[ids <= self.n_items]  # ids past the catalogue (a model's own mask token) are no items

    def transfer_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        ids = self.step_items(batch)
        rows = item_table(self.layer, self.n_items)[ids]  # (I, d)
        z = self.modules["align"](rows)
        m = self.mask[ids]
        s = self.settings
        return batch_loss(z, self.targets[ids], m, ids, s.loss, s.temperature, s.batch_rows), int(m.sum())

    def on_loss(self, trainer, batch: dict[str, torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
        if not self._on:
            return loss
        l_kt, covered = self.transfer_loss(batch)
        return self.combine(loss, l_kt, covered, int(len(self.step_items(batch))))


def item_tables(model: nn.Module, n_items: int) -> list[str]:
    """Names of the modules holding an item table (what ``transfer.side=item`` can target)."""
    return [n for n, m in model.named_modules() if n and item_table(m, n_items) is not None]
