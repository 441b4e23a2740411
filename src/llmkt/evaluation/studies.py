"""The numbers of a study, from plain tables: which grid point each (model group, vectors variant) chooses on
validation, and the report table of the chosen points (mean ± std over seeds, uplift, paired per-user tests,
Holm-corrected).

Inputs are DataFrames, one row per finished trial: ``group`` (the model group's label), ``variant`` (``none`` for
the base), ``point`` (a label of the tuned grid values), ``seed``, ``valid`` (the validation metric of the choice).
Nothing here reads test metrics to choose: :func:`choose` never sees them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

BASE = "none"


@dataclass(frozen=True)
class Choice:
    group: str
    variant: str
    chosen_variant: str  # the variant whose point won: the variant itself, or "none" when the base won
    point: str
    valid_mean: float
    seeds: tuple[int, ...]
    candidates: int  # complete candidates compared (all seeds finished)

    @property
    def base_chosen(self) -> bool:
        return self.chosen_variant == BASE and self.variant != BASE


def _complete_means(rows: pd.DataFrame, seeds: set[int]) -> pd.DataFrame:
    """Mean validation score of every (variant, point) that finished all ``seeds``."""
    g = rows.groupby(["variant", "point"], sort=False)
    means = g["valid"].mean().rename("valid_mean")
    done = g["seed"].agg(lambda s: set(s) >= seeds).rename("complete")
    out = pd.concat([means, done], axis=1).reset_index()
    return out[out["complete"]]


def choose(trials: pd.DataFrame, seeds: list[int]) -> list[Choice]:
    """For every group and variant, the candidate with the best mean validation score over ``seeds``.

    Candidates of a variant are its own points and the base's points (alpha = 0), so a study never ships a
    transfer setting that validation says hurts; the base wins ties. Points missing a seed are no candidates.
    """
    need = set(seeds)
    out: list[Choice] = []
    for group, rows in trials.groupby("group", sort=False):
        means = _complete_means(rows, need)
        base = means[means["variant"] == BASE]
        variants = [BASE] + [v for v in pd.unique(rows["variant"]) if v != BASE]
        for variant in variants:
            cand = base if variant == BASE else pd.concat([base, means[means["variant"] == variant]])
            if cand.empty:
                continue
            # ties: the base first, then the first point in grid order
            order = np.lexsort((np.arange(len(cand)), (cand["variant"] != BASE).to_numpy(),
                                -cand["valid_mean"].to_numpy()))
            best = cand.iloc[order[0]]
            out.append(Choice(str(group), variant, str(best["variant"]), str(best["point"]),
                              float(best["valid_mean"]), tuple(sorted(need)), len(cand)))
    return out


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (NaN entries stay NaN and do not count)."""
    p = np.asarray(pvalues, dtype=float)
    idx = np.flatnonzero(~np.isnan(p))
    adj = np.full_like(p, np.nan)
    if len(idx) == 0:
        return adj.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def paired(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """Paired t-test and Wilcoxon p-values of ``b - a`` over the users both have (index = user)."""
    x, y = a.align(b, join="inner")
    d = (y - x).to_numpy()
    if len(d) < 2 or not np.any(d != 0):
        return 1.0, 1.0, len(d)
    return float(stats.ttest_rel(y, x).pvalue), float(stats.wilcoxon(y, x).pvalue), len(d)


def report_table(choices: list[Choice], test: pd.DataFrame, per_user: dict[tuple[str, str], pd.Series],
                 controls: dict[str, str], metric: str) -> pd.DataFrame:
    """One row per (group, variant) of the chosen points.

    ``test``: rows ``group, variant, seed, value`` (the chosen point's test metric per seed); ``per_user``:
    ``(group, variant) -> Series`` of the metric per user, averaged over seeds; ``controls``: variant -> its
    shuffled control's variant name. Mean ± population std (ddof 0) over seeds, uplift against the base (absolute
    and relative), paired per-user t and Wilcoxon p-values against the base and against the shuffled control, and
    their Holm-adjusted values across the whole table (per test kind)."""
    rows = []
    for c in choices:
        vals = test[(test["group"] == c.group) & (test["variant"] == c.variant)]["value"].to_numpy(dtype=float)
        base_vals = test[(test["group"] == c.group) & (test["variant"] == BASE)]["value"].to_numpy(dtype=float)
        mean, std = (float(vals.mean()), float(vals.std())) if len(vals) else (np.nan, np.nan)
        bmean = float(base_vals.mean()) if len(base_vals) else np.nan
        row = {"group": c.group, "variant": c.variant, "chosen": "base" if c.base_chosen else c.point,
               "valid": c.valid_mean, f"test {metric}": mean, "std": std, "seeds": len(vals),
               "delta": mean - bmean if c.variant != BASE else np.nan,
               "uplift_%": 100 * (mean - bmean) / bmean if c.variant != BASE and bmean else np.nan,
               "p_t_base": np.nan, "p_w_base": np.nan, "p_t_shuffled": np.nan, "p_w_shuffled": np.nan}
        mine = per_user.get((c.group, c.variant))
        if c.variant != BASE and mine is not None and not c.base_chosen:
            base_pu = per_user.get((c.group, BASE))
            if base_pu is not None:
                row["p_t_base"], row["p_w_base"], _ = paired(base_pu, mine)
            ctrl = controls.get(c.variant)
            if ctrl is not None and per_user.get((c.group, ctrl)) is not None:
                row["p_t_shuffled"], row["p_w_shuffled"], _ = paired(per_user[(c.group, ctrl)], mine)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for col in ("p_t_base", "p_w_base", "p_t_shuffled", "p_w_shuffled"):
        table[col + "_holm"] = holm(table[col].tolist())
    return table


def same_point_table(choices: list[Choice], per_user: dict[tuple[str, str], pd.Series],
                     test: pd.DataFrame, control_runs: dict[tuple[str, str, str], tuple[pd.Series | None, list[float]]]
                     ) -> pd.DataFrame:
    """Each chosen transfer point against its controls trained at that same point.

    The main table compares a variant with its control's *own* choice, which is the base when no control point beat
    it on validation; here the control differs from the variant only in its vectors. ``control_runs``:
    ``(group, variant, control) -> (per-user Series averaged over seeds or None, per-seed test values)``, one entry
    per control that finished the variant's chosen point on every seed. Rows: the two means, delta and uplift, the
    paired per-user t and Wilcoxon p-values of variant minus control and their Holm-adjusted values across the
    table (per test kind)."""
    rows = []
    by_key = {(c.group, c.variant): c for c in choices}
    for (group, variant, control), (ctrl_pu, ctrl_vals) in control_runs.items():
        c = by_key[(group, variant)]
        vals = test[(test["group"] == group) & (test["variant"] == variant)]["value"].to_numpy(dtype=float)
        mean, cmean = float(vals.mean()), float(np.mean(ctrl_vals))
        row = {"group": group, "variant": variant, "point": c.point, "control": control, "test": mean,
               "test control": cmean, "delta": mean - cmean,
               "uplift_%": 100 * (mean - cmean) / cmean if cmean else np.nan, "p_t": np.nan, "p_w": np.nan}
        mine = per_user.get((group, variant))
        if mine is not None and ctrl_pu is not None:
            row["p_t"], row["p_w"], _ = paired(ctrl_pu, mine)
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    for col in ("p_t", "p_w"):
        table[col + "_holm"] = holm(table[col].tolist())
    return table
