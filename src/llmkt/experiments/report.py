"""``llmkt study report``: the study's answer as Markdown and one self-contained HTML page.

Per model group: the base and each vectors variant at its validation-chosen point, test mean ± std over seeds,
uplift against the base, paired per-user tests against the base and against the shuffled control (Holm-corrected
across the table); the validation metric against alpha; L_kt and L_model per epoch across the phase switch; an
efficiency table. Figures are PNG files next to the Markdown and embedded in the HTML.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from llmkt.config.study import BASE
from llmkt.evaluation.studies import report_table, same_point_table
from llmkt.experiments.study import (cell_run_dir, chosen_cells, finalize, open_study, point_test,
                                    same_point_cells, status, trials_table)


@dataclass
class ReportPaths:
    markdown: Path
    html: Path
    figures: list[Path]
    table: pd.DataFrame
    #: (what, run folder) per model group to serve: the best validation mean among the base and the transfer
    #: variants (controls excluded), its first seed; `llmkt study run|report` print export and serve commands
    serve: list[tuple[str, Path]] = field(default_factory=list)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return f"{v:.3g}"


def _controls(config) -> dict[str, str]:
    out = {}
    for name, var in config.vectors.items():
        if var.of is not None and var.control == "shuffle":
            out[var.of] = name
    return out


def _test_inputs(trials: pd.DataFrame, choices, cells, metric: str):
    by_cell = trials.set_index("cell")
    rows, per_user, seconds, slices = [], {}, {}, []
    for c in choices:
        series = []
        for cid in cells[(c.group, c.variant)]:
            run_dir = Path(by_cell.loc[cid, "run_dir"])
            test = json.loads((run_dir / "test.json").read_text())
            rows.append({"group": c.group, "variant": c.variant, "seed": int(by_cell.loc[cid, "seed"]),
                         "value": float(test["metrics"][metric]), "metrics": test["metrics"]})
            seconds.setdefault((c.group, c.variant), []).append(float(test.get("seconds", np.nan)))
            for name, vals in (test.get("slices") or {}).items():
                if metric in vals:
                    slices.append({"group": c.group, "variant": c.variant, "slice": name, "value": vals[metric]})
            pu = pd.read_parquet(run_dir / "test_per_user.parquet")
            if metric in pu.columns:  # AUC has no per-user value: no paired per-user test then
                series.append(pu.set_index("uid")[metric])
        if series:
            per_user[(c.group, c.variant)] = pd.concat(series, axis=1).mean(axis=1)
    return pd.DataFrame(rows), per_user, seconds, pd.DataFrame(slices)


def _same_point(trials: pd.DataFrame, same: dict[tuple[str, str, str], list[str]], metric: str):
    """``(group, variant, control) -> (per-user Series averaged over seeds or None, per-seed test values)``."""
    by_cell = trials.set_index("cell")
    return {key: point_test([by_cell.loc[cid, "run_dir"] for cid in ids], metric) for key, ids in same.items()}


def _metrics_table(test: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Chosen points' test ``metrics``, "mean ± std" over seeds (population std): one row per (group, variant)."""
    rows = []
    for (group, variant), part in test.groupby(["group", "variant"], sort=False):
        row = {"group": group, "variant": variant}
        for m in metrics:
            vals = np.array([float(d.get(m, np.nan)) for d in part["metrics"]])
            row[m] = "" if np.isnan(vals).all() else f"{np.nanmean(vals):.4f} ± {np.nanstd(vals):.4f}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["group", "variant", *metrics])


def _slice_table(slices: pd.DataFrame) -> pd.DataFrame:
    """Chosen points' test metric per slice, mean over seeds: one row per (group, slice), one column per variant."""
    if slices.empty:
        return slices
    t = slices.groupby(["group", "slice", "variant"], sort=False)["value"].mean().unstack("variant")
    return t.reset_index()


def _figure_alpha(trials: pd.DataFrame, config, choices, out: Path) -> Path | None:
    if "transfer.alpha" not in config.grid:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(trials["group"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    base_valid = {c.group: c.valid_mean for c in choices if c.variant == BASE}
    for ax, g in zip(axes[0], groups):
        rows = trials[(trials["group"] == g) & (trials["variant"] != BASE)].copy()
        rows["alpha"] = [v.get("transfer.alpha") for v in rows["values"]]
        rows = rows[rows["alpha"].notna()]  # KAR variants have no alpha: they are rows of the table only
        for variant, vr in rows.groupby("variant", sort=False):
            # the best mean over seeds among the other tuned axes, at each alpha
            means = vr.groupby(["alpha", "point"])["valid"].mean().groupby(level=0).max()
            xs = [0.0] + [float(a) for a in means.index]
            ys = [base_valid.get(g, np.nan)] + means.tolist()
            ax.plot(xs, ys, marker="o", label=variant)
        ax.set_title(g)
        ax.set_xlabel("alpha (0 = base)")
        ax.set_ylabel(f"valid {trials['metric'].dropna().iloc[0] if trials['metric'].notna().any() else ''}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "alpha.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _figure_losses(trials: pd.DataFrame, choices, cells, out: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_cell = trials.set_index("cell")
    chosen = [c for c in choices if c.variant != BASE and not c.base_chosen]
    if not chosen:
        return None
    groups = list(dict.fromkeys(c.group for c in chosen))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    for ax, g in zip(axes[0], groups):
        switch = None
        for c in (c for c in chosen if c.group == g):
            hist = [pd.DataFrame(by_cell.loc[cid, "history"]) for cid in cells[(c.group, c.variant)]]
            hist = [h for h in hist if "kt/L_kt" in h.columns]
            if not hist:
                continue
            mean = pd.concat(hist).groupby("epoch").mean(numeric_only=True)
            # L_model: logged beside L_kt in transfer epochs; in fine-tuning epochs the training loss is L_model
            l_model = mean["kt/L_model"].fillna(mean["train/loss"]) if "train/loss" in mean else mean["kt/L_model"]
            marker = "os^vDP*X"[len(ax.lines) // 2 % 8]  # distinct markers: variants with equal losses stay visible
            line = ax.plot(mean.index, mean["kt/L_kt"], marker=marker, markersize=4, alpha=0.8,
                           label=f"{c.variant} L_kt")[0]
            ax.plot(mean.index, l_model, linestyle="--", color=line.get_color(), label=f"{c.variant} L_model")
            active = mean["kt/active"].to_numpy() if "kt/active" in mean else np.array([])
            off = np.flatnonzero(active < 0.5)
            if len(off) and switch is None:
                switch = mean.index[off[0]] - 0.5
        if switch is not None:
            ax.axvline(switch, color="grey", linewidth=0.8)
        ax.set_title(f"{g}: losses per epoch")
        ax.set_xlabel("epoch (grey: transfer -> fine-tuning)")
        if ax.lines:
            ax.legend(fontsize=7)
        else:  # only KAR variants chosen here: no auxiliary loss to draw
            ax.text(0.5, 0.5, "no transfer variant chosen", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path = out / "losses.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _efficiency(trials: pd.DataFrame, choices, cells, seconds) -> pd.DataFrame:
    by_cell = trials.set_index("cell")
    rows = []
    for c in choices:
        ids = cells[(c.group, c.variant)]
        epoch_s = [by_cell.loc[i, "timings"].get("median_epoch_s", np.nan) for i in ids]
        train_s = [by_cell.loc[i, "timings"].get("train_s", np.nan) for i in ids]
        rows.append({"group": c.group, "variant": c.variant, "train s/epoch": float(np.nanmean(epoch_s)),
                     "train s": float(np.nanmean(train_s)),
                     "test scoring s": float(np.nanmean(seconds.get((c.group, c.variant), [np.nan])))})
    return pd.DataFrame(rows)


def _logged_alpha(run_dir: Path) -> float | None:
    """``transfer.alpha`` of a run folder's resolved config (None without one)."""
    import yaml

    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        return float(cfg["transfer"]["alpha"])
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
        return None


def _validation_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Every candidate (group, variant, point): mean and std of the validation metric over its finished seeds, and
    the mean share of alpha * beta * L_kt in the training loss over its transfer epochs (empty for the base and KAR:
    a transfer term near 0 % means the point could not move the model)."""
    rows = []
    for (g, v, p), r in trials.groupby(["group", "variant", "point"], sort=False):
        shares = []
        for hist, run_dir in zip(r["history"], r["run_dir"]):
            h = pd.DataFrame(hist)
            csv = Path(str(run_dir)) / "metrics.csv"
            if "kt/share" not in h.columns and "kt/active" in h.columns and csv.exists():
                h = pd.read_csv(csv)  # journals written before kt/share was kept: the run's own log
            if "kt/share" not in h.columns and {"kt/L_kt", "kt/L_model", "kt/beta"} <= set(h.columns):
                alpha = _logged_alpha(Path(str(run_dir)))  # runs older than kt/share: from its definition
                if alpha is not None:
                    term = alpha * h["kt/beta"] * h["kt/L_kt"]
                    h = h.assign(**{"kt/share": term / (term + (1 - alpha) * h["kt/L_model"])})
            if {"kt/share", "kt/active"} <= set(h.columns):
                active = h.loc[h["kt/active"] > 0.5, "kt/share"].dropna()
                if len(active):
                    shares.append(float(active.mean()))
        rows.append({"group": g, "variant": v, "point": p, "valid": float(r["valid"].mean()),
                     "std": float(r["valid"].std(ddof=0)), "seeds": len(r),
                     "kt share %": 100 * float(np.mean(shares)) if shares else np.nan})
    return pd.DataFrame(rows, columns=["group", "variant", "point", "valid", "std", "seeds", "kt share %"])


def _inline(text: str) -> str:
    """Markdown-ish text as HTML: escaped, `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _markdown_table(df: pd.DataFrame, cols: list[str], fmt: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(fmt.get(c, _fmt)(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame, cols: list[str], fmt: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt.get(c, _fmt)(r[c]))}</td>" for c in cols) + "</tr>"
                   for _, r in df.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def build_report(spec: Any, overrides: list[str] | None = None, storage: str | None = None,
                 out_dir: str | Path | None = None) -> ReportPaths:
    finalize(spec, overrides, storage)
    h = open_study(spec, overrides, storage, create=False)
    trials = trials_table(h)
    choices, cells = chosen_cells(h, trials)
    metric = str(trials["metric"].dropna().iloc[0])
    test, per_user, seconds, slices = _test_inputs(trials, choices, cells, metric)
    slice_table = _slice_table(slices)
    table = report_table(choices, test, per_user, _controls(h.config), metric)
    same = _same_point(trials, same_point_cells(h, trials, choices), metric)
    stable = same_point_table(choices, per_user, test, same) if not test.empty else pd.DataFrame()
    out = Path(out_dir) if out_dir else h.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = [p for p in (_figure_alpha(trials, h.config, choices, out), _figure_losses(trials, choices, cells, out))
               if p is not None]
    eff = _efficiency(trials, choices, cells, seconds)
    vtable = _validation_table(trials)
    st = status(h)
    tcol = f"test {metric}"
    cols = ["group", "variant", "chosen", "valid", tcol, "std", "seeds", "delta", "uplift_%", "p_t_base_holm",
            "p_w_base_holm", "p_t_shuffled_holm", "p_w_shuffled_holm"]
    fmt = {c: _p for c in cols if c.startswith("p_")}
    fmt["uplift_%"] = lambda v: _fmt(v, 2)
    fmt["seeds"] = lambda v: str(int(v)) if v == v else ""
    eff_cols = ["group", "variant", "train s/epoch", "train s", "test scoring s"]
    eff_fmt = {c: (lambda v: _fmt(v, 2)) for c in eff_cols[2:]}
    commits = sorted({c for c in trials["commit"].dropna()})
    versions = sorted({v for v in trials["llmkt"].dropna()})
    base_notes = [f"{c.group} / {c.variant}: validation chose the base model (no transfer setting beat it)"
                  for c in choices if c.base_chosen]
    info = (f"Study `{h.config.name}`: {st['complete']} of {st['cells']} cells finished; seeds {h.config.seeds}; "
            f"choice on validation {metric} (mean over seeds; the base is always a candidate), test only for the "
            f"chosen points. llmkt {', '.join(versions)}, commit {', '.join(c[:10] for c in commits) or 'unknown'}; "
            f"storage `{h.url}`.")
    legend = ("`chosen`: the tuned grid point the validation metric chose (`base` when the base model won). `delta`, "
              "`uplift_%`: against the base's chosen point. `p_*`: paired per-user tests (t, Wilcoxon) of the "
              "seed-averaged per-user test metric against the base and against the shuffled control, "
              "Holm-adjusted across the table per test kind. ± is the population std over seeds.")
    if not per_user:
        legend += (f" {metric} has no per-user value (it is computed over all test rows at once), so no paired "
                   "per-user test is made: read the ± over seeds.")
    md = [f"# {h.config.name}", "", info, "", _markdown_table(table, cols, fmt), "", legend, ""]
    if base_notes:
        md += ["Base chosen:", *[f"- {n}" for n in base_notes], ""]
    scols = ["group", "variant", "point", "control", "test", "test control", "delta", "uplift_%", "p_t_holm",
             "p_w_holm"]
    sfmt = {"p_t_holm": _p, "p_w_holm": _p, "uplift_%": lambda v: _fmt(v, 2)}
    stitle = f"Against the controls at the same point (test {metric}, mean over seeds)"
    slegend = ("Each chosen transfer point beside its controls trained at that same point, so that only the vectors "
               "differ (the table above compares with the control's own choice on validation, which is the base "
               "when no control point beat it). Not a choice on validation: read it as the controlled contrast of "
               "the chosen setting. `p_*_holm`: paired per-user tests, Holm-adjusted across this table.")
    if not stable.empty:
        md += [f"## {stitle}", "", _markdown_table(stable, scols, sfmt), "", slegend, ""]
    vcols = list(vtable.columns)
    vfmt = {"seeds": lambda v: str(int(v)), "kt share %": lambda v: _fmt(v, 2)}
    vtitle = (f"Validation by point (every candidate: {metric} mean and std over its seeds; kt share %: "
              "alpha * beta * L_kt over the training loss in transfer epochs)")
    slice_cols = list(slice_table.columns)
    if not slice_table.empty:
        md += [f"## Slices (test {metric} of the chosen points, mean over seeds)", "",
               _markdown_table(slice_table, slice_cols, {}), ""]
    more = h.config.report_metrics
    mtitle = "More test metrics (chosen points, mean ± std over seeds)"
    if more:
        mtable = _metrics_table(test, more)
        md += [f"## {mtitle}", "", _markdown_table(mtable, list(mtable.columns), {}), ""]
    md += ["## Efficiency (chosen points, mean over seeds)", "", _markdown_table(eff, eff_cols, eff_fmt), ""]
    md += [f"## {vtitle}", "", _markdown_table(vtable, vcols, vfmt), ""]
    for f in figures:
        md += [f"![{f.stem}]({f.name})", ""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md))

    def img(p: Path) -> str:
        data = base64.b64encode(p.read_bytes()).decode()
        return f'<figure><img alt="{p.stem}" src="data:image/png;base64,{data}"><figcaption>{p.stem}</figcaption></figure>'

    page = ["<!doctype html><html><head><meta charset='utf-8'>", f"<title>{html.escape(h.config.name)}</title>",
            "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
            "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;text-align:right}"
            "th{background:#f3f3f3}img{max-width:100%}</style></head><body>",
            f"<h1>{html.escape(h.config.name)}</h1>", f"<p>{_inline(info)}</p>",
            _html_table(table, cols, fmt), f"<p>{_inline(legend)}</p>"]
    if base_notes:
        page.append("<p>Base chosen:</p><ul>" + "".join(f"<li>{_inline(n)}</li>" for n in base_notes) + "</ul>")
    if not stable.empty:
        page += [f"<h2>{html.escape(stitle)}</h2>", _html_table(stable, scols, sfmt), f"<p>{_inline(slegend)}</p>"]
    if not slice_table.empty:
        page += [f"<h2>Slices (test {html.escape(metric)} of the chosen points, mean over seeds)</h2>",
                 _html_table(slice_table, slice_cols, {})]
    if more:
        page += [f"<h2>{html.escape(mtitle)}</h2>", _html_table(mtable, list(mtable.columns), {})]
    page += ["<h2>Efficiency (chosen points, mean over seeds)</h2>", _html_table(eff, eff_cols, eff_fmt)]
    page += [f"<h2>{html.escape(vtitle)}</h2>", _html_table(vtable, vcols, vfmt)]
    page += [img(f) for f in figures]
    page.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(page))
    table.to_csv(out / "table.csv", index=False)
    if not stable.empty:
        stable.to_csv(out / "same_point.csv", index=False)
    return ReportPaths(md_path, html_path, figures, table, serving_choice(h, choices, cells))


def serving_choice(h, choices, cells) -> list[tuple[str, Path]]:
    """The run folders to serve after a study, one per group (model): among the base and the transfer variants
    (shuffled and random controls excluded), the choice with the best validation mean, its first seed's run.
    Click-prediction groups (not exported) and groups whose run folder is missing are left out."""
    import yaml

    from llmkt.errors import DataError
    from llmkt.models.registry import CTR_MODELS

    controls = {name for name, var in h.config.vectors.items() if var.of is not None}
    out = []
    for group in dict.fromkeys(c.group for c in choices):
        ranked = sorted((c for c in choices if c.group == group and c.variant not in controls
                         and cells.get((c.group, c.variant))), key=lambda c: -c.valid_mean)
        if not ranked:
            continue
        c = ranked[0]
        try:
            run_dir = cell_run_dir(h.folder, cells[(c.group, c.variant)][0])
            name = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("model", {}).get("name")
        except (DataError, OSError, yaml.YAMLError):
            continue
        if name in CTR_MODELS:
            continue
        what = f"{c.group} / {c.chosen_variant}" + (f" at {c.point}" if c.point not in ("-", "") else "") + \
            f", seed {c.seeds[0]}"
        out.append((what, run_dir))
    return out


__all__ = ["ReportPaths", "build_report", "serving_choice"]
