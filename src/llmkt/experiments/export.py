"""``llmkt export RUN_DIR -o DIR``: a finished run folder -> an export folder that serves without llmkt's training
code (the format: :mod:`llmkt.serving.exported`; docs/serving.md)."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import torch

import llmkt
from llmkt.data import columns as C
from llmkt.data.sequences import csr_items
from llmkt.errors import DataError
from llmkt.experiments.evaluate import load_run
from llmkt.serving.exported import RANKING_KINDS, write_export


def export_run(run_dir: str | Path, out: str | Path, history: Literal["all", "test"] = "all",
               overwrite: bool = False) -> Path:
    """Export the best checkpoint of a finished run folder to ``out``.

    ``history`` is what known users are scored from: ``all`` (default) every interaction of the run's dataset
    (train, valid and test: what a deployed model has seen), ``test`` the history the run's test evaluation read
    (train + valid), so that the export's top-k can be checked against the run's test pass."""
    run, out = Path(run_dir), Path(out)
    if history not in ("all", "test"):
        raise DataError(f"export: history must be 'all' or 'test', got {history!r}.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(f"export: {out} exists and is not empty; choose another folder or pass --overwrite.")
    cfg, ds, split, model = load_run(run)
    if model.kind not in RANKING_KINDS:
        raise DataError(f"export: {run} trained {cfg.model.name!r}, a click-prediction model (kind {model.kind!r}); "
                        f"only ranking models ({', '.join(RANKING_KINDS)}) are exported for top-k serving.")
    frame = ds.interactions if history == "all" else split.history("test")
    frame = frame.sort_values([C.UID, C.TIMESTAMP, C.ORDER], kind="stable")
    indptr, items = csr_items(frame, ds.n_users)
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    catalogue = None
    if ds.items is not None and len(ds.items.columns) > 2:  # item_id first, then the item columns (iid left out)
        catalogue = ds.items.sort_values(C.IID)[[C.ITEM, *[c for c in ds.items.columns if c not in (C.ITEM, C.IID)]]]
    graph = None
    if model.needs_graph:
        graph = (split.train[C.UID].to_numpy(np.int64), split.train[C.IID].to_numpy(np.int64))
    transfer = cfg.transfer.model_dump(mode="json") if cfg.transfer is not None else None
    meta = {"model": cfg.model.name, "dataset": ds.name, "split": split.summary(),
            "history": history, "history_interactions": int(len(frame)),
            "transfer": transfer, "trained_with_transfer": transfer is not None,
            "metrics_at_training": {"valid": results.get("valid"), "test": results.get("test")},
            "best_epoch": results.get("best_epoch"), "run_dir": str(run.resolve()),
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "llmkt_version": llmkt.__version__, "torch_version": torch.__version__,
            "python_version": platform.python_version()}
    params = cfg.model.model_dump(mode="json", exclude={"name"})
    return write_export(out, model=model, name=cfg.model.name, params=params, n_users=ds.n_users,
                        user_ids=ds.user_map.external_ids, item_ids=ds.item_map.external_ids, indptr=indptr,
                        items=items, metadata=meta, catalogue=catalogue, graph=graph)
