"""Click-prediction evaluation: AUC and LogLoss over every (user, item, label) row of a stage.

Labels come from ratings (``rating >= positive_rating`` is a click). ``per_user`` holds each user's mean log loss
(the unit for paired tests between two models on the same rows) and their row count.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from llmkt.data import columns as C
from llmkt.evaluation.metrics import log_loss, roc_auc
from llmkt.evaluation.ranking import EvalResult
from llmkt.training.batches import click_labels


@torch.no_grad()
def evaluate_ctr(model: torch.nn.Module, rows: pd.DataFrame, positive_rating: float, *, stage: str = "",
                 batch_size: int = 4096, device: torch.device | str = "cpu",
                 user_ids: np.ndarray | None = None) -> EvalResult:
    model.eval()
    uid = rows[C.UID].to_numpy(np.int64, copy=True)
    iid = rows[C.IID].to_numpy(np.int64, copy=True)
    y = click_labels(rows, positive_rating)
    probs = np.empty(len(uid), dtype=np.float64)
    for s in range(0, len(uid), batch_size):
        b = {"uid": torch.from_numpy(uid[s:s + batch_size]).to(device),
             "iid": torch.from_numpy(iid[s:s + batch_size]).to(device)}
        probs[s:s + batch_size] = torch.sigmoid(model.logits(b)).double().cpu().numpy()
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    row_loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    per_user = pd.DataFrame({C.UID: uid, "LogLoss": row_loss}).groupby(C.UID, sort=True)["LogLoss"].agg(
        ["mean", "size"]).reset_index().rename(columns={"mean": "LogLoss", "size": "rows"})
    if user_ids is not None:
        per_user.insert(0, C.USER, np.asarray(user_ids)[per_user[C.UID].to_numpy() - 1])
    metrics = {"AUC": roc_auc(y, probs), "LogLoss": log_loss(y, probs)}
    protocol = f"click prediction: every {stage} row, label = rating >= {positive_rating:g}; global AUC and LogLoss"
    return EvalResult(metrics, per_user, protocol, stage, {"positives": float(y.mean()), "rows": len(y)})
