"""Paired significance tests on per-user metric arrays (same users, two systems)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from llmkt.data import columns as C


@dataclass
class PairedTest:
    metric: str
    mean_a: float
    mean_b: float
    diff: float
    t_pvalue: float
    wilcoxon_pvalue: float
    n_users: int


def paired_test(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> PairedTest:
    """Paired t-test and Wilcoxon signed-rank test of ``metric`` between two per-user tables (joined on uid)."""
    for name, df in (("a", a), ("b", b)):
        if metric not in df.columns:
            raise KeyError(f"paired_test: table {name} has no column {metric!r}; available: {list(df.columns)}")
    m = a[[C.UID, metric]].merge(b[[C.UID, metric]], on=C.UID, suffixes=("_a", "_b"))
    x, y = m[f"{metric}_a"].to_numpy(), m[f"{metric}_b"].to_numpy()
    d = y - x
    t_p = float(stats.ttest_rel(y, x).pvalue) if np.any(d != 0) else 1.0
    w_p = float(stats.wilcoxon(y, x).pvalue) if np.any(d != 0) else 1.0
    return PairedTest(metric, float(x.mean()), float(y.mean()), float(d.mean()), t_p, w_p, len(m))
