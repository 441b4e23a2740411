"""Config -> a KAR model for a run: backbone with two extra fields, user knowledge (a vectors file or the profile
store, leak-checked against the run's split), item knowledge (a vectors file or the item-metadata text
embedding)."""

from __future__ import annotations

import torch

from llmkt.baselines.kar import KAR
from llmkt.data.dataset import Dataset
from llmkt.data.features import FeatureTables
from llmkt.data.splits import Split
from llmkt.errors import ConfigError
from llmkt.data.vectors import ProfileVectors
from llmkt.experiments.inputs import read_vectors


def build_kar(cfg_model, ds: Dataset, split: Split, features: FeatureTables, data_dir: str | None = None
              ) -> tuple[KAR, dict]:
    from llmkt.models.registry import build_model

    backbone = build_model(cfg_model.backbone, ds.n_items, ds.n_users, features, n_extra_fields=2)
    users = read_vectors(cfg_model.user_knowledge, split, data_dir, "model.user_knowledge")
    u, u_mask = users.aligned(ds, "user")
    ik = cfg_model.item_knowledge
    if ik.text:
        from llmkt.profiles.items import item_text_vectors

        items = item_text_vectors(ds, ik.encoder)
    else:
        items = ProfileVectors.load(ik.path)
    i, i_mask = items.aligned(ds, "item")
    if u_mask[1:].sum() == 0:
        raise ConfigError("model.user_knowledge: no vector matches a user of this dataset.")
    if u.shape[1] != i.shape[1]:
        raise ConfigError(f"model.user_knowledge has width {u.shape[1]} but item knowledge {i.shape[1]}; KAR's "
                          "shared experts need one width: use the same encoder for both.")
    model = KAR(backbone, torch.from_numpy(u), torch.from_numpy(i), cfg_model.n_shared, cfg_model.n_specific,
                cfg_model.expert_hidden, cfg_model.dropout)
    info = {"user_knowledge": users.meta, "item_knowledge": items.meta,
            "user_coverage": float(u_mask[1:].mean()), "item_coverage": float(i_mask[1:].mean()),
            "knowledge_dim": int(u.shape[1])}
    return model, info
