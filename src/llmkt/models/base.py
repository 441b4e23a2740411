"""The recommender contract every llmkt model follows.

A batch is a dict of tensors. Sequential models read:

* ``"uid"``: ``(B,)`` internal user ids;
* ``"seq"``: ``(B, L + 1)`` left-padded item ids for training (the model picks inputs and targets from it),
  ``(B, L)`` for scoring (the history to predict the next item from).

Every model implements ``loss(batch) -> scalar``, ``score(batch) -> (B, n_items + 1)`` scores over all items
(column 0 is padding) and ``user_representation(batch) -> (B, d)``. Training, evaluation and knowledge transfer
only use this contract, so a user's own ``nn.Module`` works once it has these three methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


class Recommender(nn.Module, ABC):
    """Base class of llmkt models. What the framework reads from a model is declared here, never guessed:

    * ``kind``: which batches the trainer builds and the evaluator scores with (``sequential``, ``pairs``,
      ``user_rows``, ``ctr``);
    * ``max_len``: sequential models: how many recent items ``score`` reads (None otherwise);
    * ``hist_len`` / ``n_negatives``: pair models: recent items in a batch's ``hist`` and sampled negatives per
      positive (0 otherwise);
    * ``sequence_mask(batch)``: ``(B, L)`` real positions of the model's 3-D layer outputs, for pooling in knowledge
      transfer (None for models without such outputs);
    * ``needs_graph``: the model propagates over the training interactions (LightGCN): the runner calls
      ``set_graph(uid, iid)`` with the training pairs before training or scoring.
    * ``item_embeddings()``: the ``(n_items + 1, d)`` item table the model scores with, or None;
    * ``loss_sums_over_items``: ``loss(batch)`` sums over the catalogue (MultVAE's multinomial likelihood: hundreds),
      far from a transfer loss's scale; knowledge transfer then normalises it by default
      (``transfer.normalize_model_loss``, docs/transfer.md).
    """

    kind: ClassVar[str] = "sequential"
    needs_graph: ClassVar[bool] = False
    loss_sums_over_items: ClassVar[bool] = False
    max_len: int | None = None
    hist_len: int = 0
    n_negatives: int = 0

    def set_graph(self, uid: torch.Tensor, iid: torch.Tensor) -> None:
        """The training pairs (internal ids) of a model with ``needs_graph``."""
        raise NotImplementedError(f"{type(self).__name__} does not read the interaction graph")

    def item_embeddings(self) -> torch.Tensor | None:
        """``(n_items + 1, d)`` the item vectors the model ranks with (row 0 = padding), for methods that read a
        trained model's item space (A-LLMRec's stage 1); None when the model has no such table."""
        return None

    def sequence_mask(self, batch: Batch) -> torch.Tensor | None:
        """``(B, L)`` bool mask of real (non-padding) positions of 3-D layer outputs; None when there are none."""
        return None

    @abstractmethod
    def loss(self, batch: Batch) -> torch.Tensor:
        """Training loss of a batch (a scalar)."""

    @abstractmethod
    def score(self, batch: Batch) -> torch.Tensor:
        """Scores over all items, ``(B, n_items + 1)``; column 0 (padding) is ignored by the evaluator."""

    @abstractmethod
    def user_representation(self, batch: Batch) -> torch.Tensor:
        """The vector the model ranks items with, ``(B, d)``."""


class SequentialRecommender(Recommender, ABC):
    """A model over item sequences with a maximum length ``max_len``."""

    kind: ClassVar[str] = "sequential"
    max_len: int
    n_items: int


def score_in_chunks(pair_logits, uid: torch.Tensor, n_items: int, chunk: int) -> torch.Tensor:
    """Scores of every item for models that score (user, item) pairs: ``pair_logits(uid (B,), items (B, C)) ->
    (B, C)`` is called on item chunks of ``chunk``; returns ``(B, n_items + 1)`` with column 0 = ``-inf``."""
    out = torch.empty(len(uid), n_items + 1, device=uid.device)
    out[:, 0] = -torch.inf
    for start in range(1, n_items + 1, chunk):
        items = torch.arange(start, min(start + chunk, n_items + 1), device=uid.device)
        out[:, start:start + len(items)] = pair_logits(uid, items[None, :].expand(len(uid), -1))
    return out
