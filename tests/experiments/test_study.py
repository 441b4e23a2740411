"""Studies (issue 15): grid expansion, validation-only choice, shared base runs, workers, a killed worker, the
report's numbers and page, bad specs before any training."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from scipy import stats

pytest.importorskip("optuna")

from llmkt.cli import main  # noqa: E402
from llmkt.config.study import load_study_config  # noqa: E402
from llmkt.data import ProfileVectors  # noqa: E402
from llmkt.evaluation.studies import BASE, Choice, choose, holm, report_table  # noqa: E402
from llmkt.errors import ConfigError, DataError  # noqa: E402
from llmkt.experiments.study import (Cell, _probe_cells, cell_config, cell_run_dir, expand, open_study,  # noqa: E402
                                     point_test, read_selection, run_study, same_point_cells, trials_table)
from tests.conftest import random_interactions  # noqa: E402


def tiny_study(tmp: Path, *, epochs: int = 3, models=None, seeds=(1, 2), alphas=(0.1, 0.5), slices=None,
               **extra) -> Path:
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    inter = random_interactions(n_users=30, n_items=40, per_user=12, seed=0)
    inter.to_csv(data / "interactions.csv", index=False)
    users = np.asarray(inter["user_id"].unique(), dtype=str)
    ProfileVectors(users, np.random.default_rng(0).normal(size=(len(users), 16)), {"dataset": "csv"}).save(
        tmp / "llm.npz")
    spec = {"name": "tiny", "dir": str(tmp / "study"), "seeds": list(seeds),
            "run": {"data": {"name": "csv", "path": str(data)}, "model": {"name": "bprmf", "dim": 8},
                    "training": {"epochs": epochs, "batch_size": 64, "progress": False, "device": "cpu"},
                    **({"evaluation": {"slices": slices}} if slices else {})},
            "transfer": {"reducer": {"method": "pca"}},
            "grid": {"transfer.alpha": list(alphas), **({"model": models} if models else {})},
            "vectors": {"llm": {"path": str(tmp / "llm.npz")}, "shuffled": {"of": "llm", "control": "shuffle"},
                        "random": {"of": "llm", "control": "random"}}, **extra}
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def attempts(tmp: Path) -> list[dict]:
    path = tmp / "study" / "attempts.log"
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def test_grid_expansion_is_exact(tmp_path):
    spec = load_study_config(tiny_study(tmp_path, models=[{"name": "bprmf", "dim": 8}, {"name": "multvae"}]))
    cells = expand(spec)
    base = [c for c in cells if c.variant == BASE]
    # base: 2 models x 2 seeds (the alpha axis does not apply); each variant: 2 models x 2 alphas x 2 seeds
    assert len(base) == 4 and len(cells) == 4 + 3 * 8
    assert [dict(c.point) for c in base[:2]] == [{"model": {"name": "bprmf", "dim": 8}}, {"model": {"name": "multvae"}}]
    assert {c.seed for c in cells} == {1, 2} and len({c.id for c in cells}) == len(cells)
    llm = [c for c in cells if c.variant == "llm" and c.seed == 1]
    assert [dict(c.point) for c in llm] == [{"transfer.alpha": a, "model": m} for a in (0.1, 0.5)
                                           for m in ({"name": "bprmf", "dim": 8}, {"name": "multvae"})]
    # the cell id is part of the run folder's name and of resuming: it must not drift
    canonical = b'{"point": [["model", {"name": "bprmf"}]], "seed": 1, "variant": "none"}'
    assert Cell(BASE, (("model", {"name": "bprmf"}),), 1).id == hashlib.sha256(canonical).hexdigest()[:12]
    cfg = cell_config(spec, llm[3], spec.base_run(), tmp_path / "t")
    assert (cfg.model.name, cfg.transfer.alpha, cfg.training.seed, cfg.transfer.compare_base) == ("multvae", 0.5, 1,
                                                                                                False)
    base_cfg = cell_config(spec, base[1], spec.base_run(), tmp_path / "t")
    assert base_cfg.transfer is None and base_cfg.output.name == base[1].name


def test_the_random_control_is_the_library_one(tmp_path):
    from llmkt.experiments.inputs import read_vectors

    spec = load_study_config(tiny_study(tmp_path))
    cell = next(c for c in expand(spec) if c.variant == "random" and c.seed == 2)
    v = cell_config(spec, cell, spec.base_run(), tmp_path / "t").transfer.vectors
    got = read_vectors(v)
    want = ProfileVectors.load(tmp_path / "llm.npz").control("random", 2)
    assert np.array_equal(got.vectors, want.vectors) and got.meta["control"] == "random"


def test_a_control_of_a_both_sides_variant_controls_both_sides(tmp_path):
    tiny_study(tmp_path)
    spec = yaml.safe_load((tmp_path / "study.yaml").read_text())
    items = np.asarray([str(i) for i in range(1, 41)])
    ProfileVectors(items, np.random.default_rng(1).normal(size=(40, 8)), {"dataset": "csv", "entity": "item"}).save(
        tmp_path / "items.npz")
    both = {"item": {"vectors": {"path": str(tmp_path / "items.npz")}, "alpha": 0.2}}
    spec["vectors"] = {"both": {"path": str(tmp_path / "llm.npz"), "transfer": both},
                       "both_shuffled": {"of": "both", "control": "shuffle"}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    study = load_study_config(tmp_path / "study.yaml")
    cells = {(c.variant, c.seed): c for c in expand(study) if c.variant != BASE}
    real = cell_config(study, cells[("both", 2)], study.base_run(), tmp_path / "t").transfer
    ctrl = cell_config(study, cells[("both_shuffled", 2)], study.base_run(), tmp_path / "t").transfer
    assert (real.vectors.control, real.item.vectors.control) == ("none", "none")
    assert (ctrl.vectors.control, ctrl.vectors.control_seed) == ("shuffle", 2)
    assert (ctrl.item.vectors.control, ctrl.item.vectors.control_seed, ctrl.item.alpha) == ("shuffle", 2, 0.2)
    assert ctrl.item.vectors.path == real.item.vectors.path
    assert study.vectors["both"].transfer["item"]["vectors"] == {"path": str(tmp_path / "items.npz")}  # not mutated


def _trials(rows):
    return pd.DataFrame(rows, columns=["group", "variant", "point", "seed", "valid", "test"])


def test_the_choice_uses_validation_only_and_the_base_is_a_candidate():
    t = _trials([
        ("m", BASE, "-", 1, 0.30, 0.20), ("m", BASE, "-", 2, 0.32, 0.22),
        ("m", "llm", "a=0.1", 1, 0.35, 0.10), ("m", "llm", "a=0.1", 2, 0.33, 0.11),  # best on validation
        ("m", "llm", "a=0.9", 1, 0.31, 0.90), ("m", "llm", "a=0.9", 2, 0.30, 0.95),  # planted: best on test only
        ("m", "rnd", "a=0.1", 1, 0.29, 0.50), ("m", "rnd", "a=0.1", 2, 0.30, 0.50),  # worse than base on valid
        ("m", "rnd", "a=0.5", 1, 0.99, 0.99),  # one seed missing: no candidate
    ])
    c = {x.variant: x for x in choose(t, [1, 2])}
    assert (c["llm"].point, c["llm"].chosen_variant) == ("a=0.1", "llm") and not c["llm"].base_chosen
    assert c["llm"].valid_mean == pytest.approx(0.34)
    assert c["rnd"].base_chosen and c["rnd"].point == "-" and c["rnd"].candidates == 2
    assert c[BASE].valid_mean == pytest.approx(0.31)
    tie = _trials([("m", BASE, "-", 1, 0.3, 0), ("m", "llm", "a", 1, 0.3, 1)])
    assert choose(tie, [1])[1].base_chosen  # ties go to the base


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, float("nan")])[1])


def test_report_numbers_equal_a_hand_computed_table():
    from llmkt.evaluation.studies import Choice

    choices = [Choice("m", BASE, BASE, "-", 0.3, (1, 2), 1), Choice("m", "llm", "llm", "a=0.1", 0.4, (1, 2), 3),
               Choice("m", "shuf", "llm", "a=0.5", 0.35, (1, 2), 3)]
    test = pd.DataFrame([("m", BASE, 1, 0.10), ("m", BASE, 2, 0.20), ("m", "llm", 1, 0.15), ("m", "llm", 2, 0.27),
                         ("m", "shuf", 1, 0.11), ("m", "shuf", 2, 0.19)], columns=["group", "variant", "seed", "value"])
    users = pd.Index([1, 2, 3, 4, 5], name="uid")
    pu = {("m", BASE): pd.Series([0.1, 0.2, 0.0, 0.3, 0.15], users),
          ("m", "llm"): pd.Series([0.2, 0.25, 0.1, 0.3, 0.4], users),
          ("m", "shuf"): pd.Series([0.1, 0.1, 0.05, 0.3, 0.2], users)}
    table = report_table(choices, test, pu, {"llm": "shuf"}, "NDCG@10").set_index("variant")
    llm = table.loc["llm"]
    assert llm["test NDCG@10"] == pytest.approx(0.21) and llm["std"] == pytest.approx(0.06)
    assert llm["delta"] == pytest.approx(0.06) and llm["uplift_%"] == pytest.approx(40.0)
    x, y = pu[("m", BASE)].to_numpy(), pu[("m", "llm")].to_numpy()
    assert llm["p_t_base"] == pytest.approx(stats.ttest_rel(y, x).pvalue)
    assert llm["p_w_base"] == pytest.approx(stats.wilcoxon(y, x).pvalue)
    z = pu[("m", "shuf")].to_numpy()
    assert llm["p_t_shuffled"] == pytest.approx(stats.ttest_rel(y, z).pvalue)
    p_base = [llm["p_t_base"], table.loc["shuf", "p_t_base"]]
    assert sorted([llm["p_t_base_holm"], table.loc["shuf", "p_t_base_holm"]]) == pytest.approx(
        sorted(holm(p_base)))
    assert table.loc[BASE, "test NDCG@10"] == pytest.approx(0.15) and np.isnan(table.loc[BASE, "delta"])
    assert table.loc["shuf", "chosen"] == "a=0.5"


def test_same_point_table_equals_a_hand_computed_table():
    from llmkt.evaluation.studies import Choice, same_point_table

    choices = [Choice("m", BASE, BASE, "-", 0.3, (1, 2), 1), Choice("m", "llm", "llm", "a=0.1", 0.4, (1, 2), 3)]
    test = pd.DataFrame([("m", BASE, 1, 0.10), ("m", BASE, 2, 0.20), ("m", "llm", 1, 0.15), ("m", "llm", 2, 0.25)],
                        columns=["group", "variant", "seed", "value"])
    users = pd.Index([1, 2, 3, 4, 5], name="uid")
    mine = pd.Series([0.2, 0.25, 0.1, 0.3, 0.4], users)
    shuf = pd.Series([0.1, 0.1, 0.05, 0.3, 0.2], users)
    rand = pd.Series([0.2, 0.2, 0.1, 0.2, 0.3], users)
    table = same_point_table(choices, {("m", "llm"): mine}, test,
                             {("m", "llm", "shuf"): (shuf, [0.10, 0.20]), ("m", "llm", "rand"): (rand, [0.2, 0.3]),
                              ("m", "llm", "auc"): (None, [0.16, 0.24])}).set_index("control")
    assert table.loc["shuf", "test"] == pytest.approx(0.20) and table.loc["shuf", "test control"] == pytest.approx(0.15)
    assert table.loc["shuf", "delta"] == pytest.approx(0.05) and table.loc["shuf", "uplift_%"] == pytest.approx(100 / 3)
    assert table.loc["rand", "delta"] == pytest.approx(-0.05) and table.loc["shuf", "point"] == "a=0.1"
    p_t = [stats.ttest_rel(mine, shuf).pvalue, stats.ttest_rel(mine, rand).pvalue]
    assert [table.loc["shuf", "p_t"], table.loc["rand", "p_t"]] == pytest.approx(p_t)
    assert [table.loc["shuf", "p_t_holm"], table.loc["rand", "p_t_holm"]] == pytest.approx(holm(p_t))
    assert table.loc["shuf", "p_w"] == pytest.approx(stats.wilcoxon(mine, shuf).pvalue)
    assert np.isnan(table.loc["auc", "p_t"]) and np.isnan(table.loc["auc", "p_t_holm"])  # no per-user values


def test_a_study_runs_shares_its_base_runs_and_reports(tmp_path, monkeypatch):
    spec = tiny_study(tmp_path, models=[{"name": "bprmf", "dim": 8}, {"name": "neumf", "gmf_dim": 4,
                                                                      "mlp_dims": [8, 4], "n_negatives": 2}],
                      slices={"user_history": [12], "item_popularity": None})
    out = CliRunner().invoke(main, ["study", "run", str(spec)])
    assert out.exit_code == 0, out.output
    runs = attempts(tmp_path)
    cells = expand(load_study_config(spec))
    assert len(cells) == 4 + 3 * 2 * 2 * 2
    assert sorted(r["cell"] for r in runs) == sorted(c.id for c in cells)  # every cell trained exactly once
    base_runs = [r for r in runs if r["name"].startswith(f"{BASE}-")]
    assert len(base_runs) == 4  # one per (model, seed), shared by the three variants
    h = open_study(spec, create=False)
    trials = trials_table(h)
    assert len(trials) == len(cells) and set(trials["group"]) == {"bprmf,dim=8",
                                                                   "neumf,gmf_dim=4,mlp_dims=[8, 4],n_negatives=2"}
    # journal fields of a transfer trial
    row = trials[trials["variant"] == "llm"].iloc[0]
    assert row["transfer"]["layer"] == "user_emb" and row["transfer"]["vectors_meta"]["dataset"] == "csv"
    assert {"kt/L_kt", "kt/L_model", "kt/beta"} <= set(row["history"][0]) and row["llmkt"]
    # test evaluated for the chosen points and for the controls of a chosen transfer point at that point only
    sel = json.loads((h.folder / "selection.json").read_text())
    chosen = {cid for c in sel["choices"] for cid in c["cells"]}
    by_cell = trials.set_index("cell")
    points = {(c["group"], c["variant"]): c["point"] for c in sel["choices"] if not c["base_chosen"]}
    same = set()
    for s in sel["same_point_controls"]:
        assert {by_cell.loc[cid, "variant"] for cid in s["cells"]} == {s["control"]}
        assert {by_cell.loc[cid, "point"] for cid in s["cells"]} == {points[(s["group"], s["variant"])]}
        assert sorted(by_cell.loc[cid, "seed"] for cid in s["cells"]) == [1, 2]
        same |= set(s["cells"])
    expect_same = {(g, v, k) for (g, v) in points if v == "llm" for k in ("shuffled", "random")}
    assert {(s["group"], s["variant"], s["control"]) for s in sel["same_point_controls"]} == expect_same
    # had llm chosen its alpha=0.5 point in a group, each control's two cells at that point are its contrast
    group = sorted(set(trials["group"]))[0]
    point = sorted(set(trials[(trials["variant"] == "llm")]["point"]))[-1]
    pick = [Choice(group, "llm", "llm", point, 0.5, (1, 2), 3), Choice(group, "shuffled", BASE, "-", 0.4, (1, 2), 3)]
    got = same_point_cells(h, trials, pick)
    assert sorted(got) == [(group, "llm", "random"), (group, "llm", "shuffled")]
    for (_, _, control), ids in got.items():
        rows = trials[(trials["group"] == group) & (trials["variant"] == control) & (trials["point"] == point)]
        assert ids == rows.sort_values("seed")["cell"].tolist() and len(ids) == 2
    assert same_point_cells(h, trials[trials["seed"] == 1], pick) == {}  # a control missing a seed: left out
    tested = {p.parent.name for p in (h.folder / "trials").glob("*/test.json")}
    assert tested == {h.cell(cid).name for cid in chosen | same} and len(tested) < len(cells)
    assert not list((h.folder / "trials").glob("*/test_per_user.csv"))  # no trial looked at test while training
    # the report: Markdown table and a self-contained HTML page with the table and the figures
    md = (h.folder / "report" / "report.md").read_text()
    assert "| group | variant | chosen |" in md and "p_t_base_holm" in md
    vrows = [line for line in md.split("## Validation by point")[1].splitlines() if line.startswith("| ")][1:]
    assert len(vrows) == trials.groupby(["group", "variant", "point"]).ngroups == 2 + 3 * 2 * 2
    shares = {tuple(c.strip() for c in line.split("|")[1:4]): line.split("|")[-2].strip() for line in vrows}
    assert all(s == "" for (g, v, p), s in shares.items() if v == BASE)  # no transfer term in base runs
    assert all(0 < float(s) < 100 for (g, v, p), s in shares.items() if v != BASE)
    page = (h.folder / "report" / "report.html").read_text()

    class Page(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags, self.imgs, self.cells = [], [], []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            if tag == "img":
                self.imgs.append(dict(attrs)["src"])

        def handle_data(self, data):
            if self.tags and self.tags[-1] == "td":
                self.cells.append(data)

    parsed = Page()
    parsed.feed(page)
    # results, slices, efficiency, validation (+ same point when a variant with controls chose a transfer point)
    assert parsed.tags.count("table") == 4 + bool(expect_same) and len(parsed.imgs) == 2
    assert ("## Against the controls at the same point" in md) == bool(expect_same)
    assert "users <12 train" in parsed.cells and "## Slices" in md
    assert all(src.startswith("data:image/png;base64,") and len(src) > 1000 for src in parsed.imgs)
    assert "shuffled" in parsed.cells and "random" in parsed.cells
    # the same-point section, with the contrast of the hand-made choice above in place of the study's own
    import llmkt.experiments.report as report_mod
    import llmkt.experiments.study as study_mod
    from llmkt.experiments.report import build_report

    monkeypatch.setattr(study_mod, "same_point_cells", lambda *_: got)
    monkeypatch.setattr(report_mod, "same_point_cells", lambda *_: got)
    build_report(spec, out_dir=tmp_path / "r2")
    monkeypatch.undo()
    md2 = (tmp_path / "r2" / "report.md").read_text()
    assert "## Against the controls at the same point" in md2
    same_csv = pd.read_csv(tmp_path / "r2" / "same_point.csv").set_index("control")
    for (_, _, control), ids in got.items():
        _, vals = point_test([by_cell.loc[cid, "run_dir"] for cid in ids], str(trials["metric"].iloc[0]))
        assert same_csv.loc[control, "test control"] == pytest.approx(np.mean(vals))
    # the output ends with how to serve the model chosen on validation, per model group (controls never chosen)
    tail = out.output.strip().splitlines()[-4:]
    for i, group in enumerate(dict.fromkeys(c["group"] for c in sel["choices"])):
        best = max((c for c in sel["choices"] if c["group"] == group and c["variant"] not in ("shuffled", "random")),
                   key=lambda c: c["valid_mean"])
        served = cell_run_dir(h.folder, best["cells"][0])
        name = f"{h.folder.name}-{served.name}"
        assert tail[2 * i].startswith(f"serve the model chosen on validation ({group} / ")
        assert f"seed {best['seeds'][0]}" in tail[2 * i]
        assert tail[2 * i + 1] == f"  llmkt export {served} -o exports/{name} && llmkt serve exports/{name}"
    st = CliRunner().invoke(main, ["study", "status", str(spec)])
    assert st.exit_code == 0 and json.loads(st.output) == {"cells": len(cells), "complete": len(cells), "running": 0}
    # a second run does nothing: finished cells never run again
    again = CliRunner().invoke(main, ["study", "run", str(spec), "--no-report"])
    assert again.exit_code == 0 and "(0 now" in again.output and len(attempts(tmp_path)) == len(runs)


def test_two_worker_processes_fill_one_study_without_running_a_cell_twice(tmp_path):
    spec = tiny_study(tmp_path, epochs=20, seeds=(1, 2, 3))
    r = run_study(spec, workers=2)
    cells = expand(load_study_config(spec))
    assert r.complete == r.cells == len(cells) == 3 + 3 * 2 * 3
    runs = attempts(tmp_path)
    assert sorted(x["cell"] for x in runs) == sorted(c.id for c in cells)
    assert len({x["worker"] for x in runs}) >= 1
    h = open_study(spec, create=False)
    assert len(trials_table(h)) == len(cells)


RACE = """
import multiprocessing as mp, sys
import optuna
from llmkt.experiments.study import open_storage

def pop(url, barrier, q):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="race", storage=open_storage(url))
    barrier.wait()
    got = []
    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
        got.append(study.ask().user_attrs.get("cell"))
    q.put(got)

if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = sys.argv[1]
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for i in range(40):
        study.enqueue_trial({}, user_attrs={"cell": i})
    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=pop, args=(url, barrier, q)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [c for _ in procs for c in q.get() if c is not None]
    for p in procs:
        p.join()
    print(sorted(got))
"""


def test_workers_popping_at_once_take_each_waiting_trial_once(tmp_path):
    # Python's sqlite3 starts a transaction only at the first write: without BEGIN IMMEDIATE four processes
    # popped 43-50 trials for 40 waiting ones (a cell trained twice into one folder)
    script = tmp_path / "race.py"
    script.write_text(RACE)
    out = subprocess.run([sys.executable, str(script), f"sqlite:///{tmp_path / 'race.db'}"], capture_output=True,
                         text=True, timeout=300, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == list(range(40))


def test_a_killed_workers_trial_runs_again_and_is_journaled_once(tmp_path):
    spec = tiny_study(tmp_path, epochs=150, seeds=(1,), alphas=(0.5,))  # a second or two per cell
    cmd = [sys.executable, "-m", "llmkt.cli", "study", "run", str(spec), "--no-report"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while len(attempts(tmp_path)) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = attempts(tmp_path)[-1]["cell"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "1 stale re-run" in out.stdout
    runs = attempts(tmp_path)
    assert [x["cell"] for x in runs].count(killed) == 2  # killed once, run again
    h = open_study(spec, create=False)
    trials = trials_table(h)
    assert len(trials) == len(expand(load_study_config(spec))) and list(trials["cell"]).count(killed) == 1
    import optuna

    complete = [t for t in h.optuna_study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
                if t.user_attrs.get("cell") == killed]
    assert len(complete) == 1


@pytest.mark.parametrize("edit, needle", [
    (lambda s: s["grid"].update({"model.hiden": [3]}), "model.hiden: unknown key"),
    (lambda s: s["grid"].update({"transfer.alpha": []}), "grid axis 'transfer.alpha' has no values"),
    (lambda s: s.update(seeds=[]), "seeds"),
    (lambda s: s["vectors"].update(llm={"profiles": "JOB"}), "does not exist; run `llmkt profiles generate`"),
    (lambda s: s.update(engine={"storage": "sqlite:////nonexistent-dir/x/study.db"}), "cannot open this storage"),
    (lambda s: s["vectors"].update(shuffled={"of": "nope", "control": "shuffle"}), "no variant 'nope'"),
    (lambda s: s["transfer"].update(layer="user_embz"), "no layer of BPRMF matches 'user_embz'"),
])
def test_bad_specs_fail_before_any_training(tmp_path, edit, needle):
    path = tiny_study(tmp_path)
    spec = yaml.safe_load(path.read_text())
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"data": spec["run"]["data"], "backend": {"kind": "template"},
                                   "store": str(tmp_path / "missing.sqlite")}))
    edit(spec)
    if spec["vectors"].get("llm", {}).get("profiles") == "JOB":
        spec["vectors"]["llm"]["profiles"] = str(job)
    path.write_text(yaml.safe_dump(spec))
    out = CliRunner().invoke(main, ["study", "run", str(path)])
    assert out.exit_code == 2, out.output
    errors = [ln for ln in out.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], out.output
    assert attempts(tmp_path) == []  # nothing trained


def test_a_journal_file_storage_works_like_sqlite(tmp_path):
    spec = tiny_study(tmp_path, seeds=(1,), alphas=(0.5,))
    url = f"journal:{tmp_path / 'shared' / 'study.log'}"
    r = run_study(spec, storage=url)
    assert r.complete == r.cells == 4 and (tmp_path / "shared" / "study.log").exists()
    assert not (tmp_path / "study" / "study.db").exists()
    out = CliRunner().invoke(main, ["study", "report", str(spec), "--storage", url])
    assert out.exit_code == 0, out.output
    assert "| all | llm |" in out.output


def test_a_variant_added_later_runs_only_its_cells_and_a_changed_one_is_refused(tmp_path):
    path = tiny_study(tmp_path, seeds=(1,), alphas=(0.5,))
    spec = yaml.safe_load(path.read_text())
    first = dict(spec, vectors={"llm": spec["vectors"]["llm"]})
    path.write_text(yaml.safe_dump(first))
    assert run_study(path).complete == 2  # base + llm
    path.write_text(yaml.safe_dump(spec))  # + shuffled and random: two new cells, the base is not trained again
    r = run_study(path)
    assert (r.complete, r.cells) == (4, 4)
    assert sorted(x["name"].split("-s")[0] for x in attempts(tmp_path)) == ["llm", "none", "random", "shuffled"]
    for edit, needle in [(lambda s: s["vectors"]["llm"].update(transfer={"dynamic_beta": True}), "variant(s) ['llm']"),
                         (lambda s: s["transfer"].update(dynamic_beta=True), "another base run or transfer section"),
                         (lambda s: s["run"]["training"].update(lr=0.5), "another base run or transfer section")]:
        changed = yaml.safe_load(yaml.safe_dump(spec))
        edit(changed)
        path.write_text(yaml.safe_dump(changed))
        out = CliRunner().invoke(main, ["study", "run", str(path)])
        assert out.exit_code == 2 and needle in out.output, out.output
    assert len(attempts(tmp_path)) == 4


def test_kar_variants_take_the_knowledge_as_input_and_skip_the_transfer_axes(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    inter = random_interactions(n_users=40, n_items=30, per_user=10, seed=0)
    inter.to_csv(data / "interactions.csv", index=False)
    rng = np.random.default_rng(0)
    users = np.asarray(inter["user_id"].unique(), dtype=str)
    items = np.asarray(inter["item_id"].unique(), dtype=str)
    ProfileVectors(users, rng.normal(size=(len(users), 8)), {"dataset": "csv"}).save(tmp_path / "u.npz")
    ProfileVectors(items, rng.normal(size=(len(items), 8)), {"dataset": "csv"}).save(tmp_path / "i.npz")
    spec = {"name": "ctr", "dir": str(tmp_path / "study"), "seeds": [1],
            "run": {"data": {"name": "csv", "path": str(data), "positive_rating": 3}, "split": {"kind": "ratio"},
                    "model": {"name": "dcn", "embed_dim": 4, "hidden": [8]},
                    "training": {"epochs": 2, "batch_size": 32, "progress": False, "device": "cpu"}},
            "transfer": {"reducer": {"method": "pca"}},
            "grid": {"transfer.alpha": [0.1, 0.5]},
            "vectors": {"kar": {"path": str(tmp_path / "u.npz"), "use": "kar",
                                "kar": {"item_knowledge": {"path": str(tmp_path / "i.npz")}, "expert_hidden": 8}},
                        "kar_shuffled": {"of": "kar", "control": "shuffle"},
                        "llm": {"path": str(tmp_path / "u.npz")}}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    cells = expand(load_study_config(path))
    assert [(c.variant, c.point) for c in cells] == [
        ("none", ()), ("kar", ()), ("kar_shuffled", ()),
        ("llm", (("transfer.alpha", 0.1),)), ("llm", (("transfer.alpha", 0.5),))]
    study = load_study_config(path)
    base_raw = study.base_run()
    kar = cell_config(study, cells[2], base_raw, tmp_path / "t")
    assert kar.transfer is None and kar.model.name == "kar" and kar.model.backbone.name == "dcn"
    assert kar.model.user_knowledge.control == "shuffle" and kar.model.expert_hidden == 8
    assert cell_config(study, cells[3], base_raw, tmp_path / "t").model.name == "dcn"
    r = run_study(path)
    assert r.complete == r.cells == 5
    out = CliRunner().invoke(main, ["study", "report", str(path)])
    assert out.exit_code == 0, out.output
    assert "| all | kar |" in out.output and "| all | kar_shuffled |" in out.output
    bad = dict(spec, vectors={"kar": {**spec["vectors"]["kar"], "transfer": {"alpha": 0.5}}})
    path.write_text(yaml.safe_dump(bad))
    out = CliRunner().invoke(main, ["study", "run", str(path)])
    assert out.exit_code == 2 and "KAR variant trains without knowledge transfer" in out.output


STUDY_FILES = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "studies").glob("*.yaml"))


@pytest.mark.parametrize("path", STUDY_FILES, ids=[p.stem for p in STUDY_FILES])
def test_every_benchmark_study_file_expands_to_valid_run_configs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(path.parents[2])
    study = load_study_config(path)
    cells = expand(study) + _probe_cells(study)  # a search's cells: one per search at the space's first point
    base_raw = study.base_run(path.parent)
    configs = [cell_config(study, c, base_raw, tmp_path) for c in cells]
    assert len(configs) == len(cells) > 0 and len({c.id for c in cells}) == len(cells)
    assert {c.training.seed for c in configs} == (set(study.seeds) if study.search is None else {study.seeds[0]})


def test_a_tpe_search_proposes_rounds_within_the_space_and_repeats_itself(tmp_path):
    def make(folder):
        path = tiny_study(folder, seeds=(1, 2), alphas=(0.5,))
        spec = yaml.safe_load(path.read_text())
        spec["grid"] = {}
        spec["vectors"] = {"llm": spec["vectors"]["llm"]}
        spec["search"] = {"space": {"transfer.alpha": {"low": 0.05, "high": 0.9, "log": True},
                                    "transfer.pooling": ["mean", "last"]},
                          "n_points": 5, "per_round": 2, "n_startup": 2, "seed": 3}
        path.write_text(yaml.safe_dump(spec))
        return path

    path = make(tmp_path / "a")
    study = load_study_config(path)
    assert [c.variant for c in expand(study)] == ["none", "none"]  # the base: static; llm: searched
    r = run_study(path)
    assert (r.complete, r.cells) == (2 + 5 * 2, 12)
    h = open_study(path, create=False)
    [points] = h.optuna_study.user_attrs["llmkt_search"].values()
    assert len(points) == 5 and len({json.dumps(p, sort_keys=True) for p in points}) == 5
    assert all(0.05 <= p["transfer.alpha"] <= 0.9 and p["transfer.pooling"] in ("mean", "last") for p in points)
    runs = attempts(tmp_path / "a")
    # rounds: 2 + 2 + 1 points, each round only after every seed of the previous one finished
    order = [x["cell"] for x in runs]
    by_point = {}
    for c in h.cells:
        if c.variant == "llm":
            by_point.setdefault(json.dumps(c.values(), sort_keys=True), []).append(order.index(c.id))
    firsts = sorted(min(v) for v in by_point.values())
    lasts = sorted(max(v) for v in by_point.values())
    assert firsts[2] > lasts[1] and firsts[4] > lasts[3]
    # the same spec elsewhere proposes the same points; a rerun proposes nothing new
    again = run_study(make(tmp_path / "b"))
    assert again.complete == 12
    [points_b] = open_study(make(tmp_path / "b"), create=False).optuna_study.user_attrs["llmkt_search"].values()
    assert points_b == points
    assert run_study(path).ran == 0
    st = CliRunner().invoke(main, ["study", "status", str(path)])
    assert st.exit_code == 0 and json.loads(st.output)["search_points"] == {"llm all": 5}, st.output
    out = CliRunner().invoke(main, ["study", "report", str(path)])
    assert out.exit_code == 0 and "| all | llm |" in out.output, out.output
    spec = yaml.safe_load(path.read_text())
    spec["grid"] = {"transfer.alpha": [0.1]}
    path.write_text(yaml.safe_dump(spec))
    out = CliRunner().invoke(main, ["study", "run", str(path)])
    assert out.exit_code == 2 and "with search, the grid holds the model group axes only" in out.output


def test_a_study_made_by_the_first_dev_version_opens_and_grows(tmp_path):
    from llmkt.experiments.study import _legacy_spec_hash

    path = tiny_study(tmp_path, seeds=(1,), alphas=(0.5,))
    spec = yaml.safe_load(path.read_text())
    first = dict(spec, vectors={"llm": spec["vectors"]["llm"]})
    path.write_text(yaml.safe_dump(first))
    assert run_study(path).complete == 2
    h = open_study(path, create=False)
    # as that version stored it: one digest over run, transfer and variants (without the later `use`/`kar` keys)
    old_vectors = {"llm": {k: v for k, v in load_study_config(path).vectors["llm"].model_dump(mode="json").items()
                           if k not in ("use", "kar")}}
    h.optuna_study.set_user_attr("llmkt_spec", _legacy_spec_hash(h.base_raw, h.config.transfer, old_vectors))
    h.optuna_study.set_user_attr("llmkt_config", {**h.optuna_study.user_attrs["llmkt_config"], "vectors": old_vectors})
    h.optuna_study.set_user_attr("llmkt_variants", None)
    path.write_text(yaml.safe_dump(spec))  # two variants more
    r = run_study(path)
    assert (r.complete, r.ran) == (4, 2)
    changed = yaml.safe_load(yaml.safe_dump(spec))
    changed["vectors"]["llm"]["transfer"] = {"dynamic_beta": True}
    path.write_text(yaml.safe_dump(changed))
    out = CliRunner().invoke(main, ["study", "run", str(path)])
    assert out.exit_code == 2 and "variant(s) ['llm']" in out.output


def test_a_variant_without_trials_may_still_change(tmp_path):
    path = tiny_study(tmp_path, seeds=(1,), alphas=(0.5,))
    spec = yaml.safe_load(path.read_text())
    spec["vectors"]["later"] = {"path": spec["vectors"]["llm"]["path"]}
    path.write_text(yaml.safe_dump(spec))
    open_study(path)  # records every variant's digest, "later" included, before any trial
    spec["vectors"]["later"]["min_coverage"] = 1.0
    path.write_text(yaml.safe_dump(spec))
    assert run_study(path).complete == 5
    spec["vectors"]["later"]["min_coverage"] = 0.5  # now it has trials
    path.write_text(yaml.safe_dump(spec))
    out = CliRunner().invoke(main, ["study", "run", str(path)])
    assert out.exit_code == 2 and "variant(s) ['later']" in out.output


def test_validation_table_reads_the_share_or_computes_it_for_older_runs(tmp_path):
    from llmkt.experiments.report import _validation_table

    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text("transfer: {alpha: 0.25}\n")
    hist_old = [{"epoch": 1, "kt/active": 1.0, "kt/L_model": 3.0, "kt/L_kt": 2.0, "kt/beta": 1.0},
                {"epoch": 2, "kt/active": 0.0}]
    hist_new = [{"epoch": 1, "kt/active": 1.0, "kt/share": 0.3}, {"epoch": 2, "kt/active": 1.0, "kt/share": 0.1}]
    trials = pd.DataFrame([
        {"group": "g", "variant": BASE, "point": "-", "seed": 1, "valid": 0.1, "history": [{"epoch": 1}],
         "run_dir": str(tmp_path / "b")},
        {"group": "g", "variant": "llm", "point": "a", "seed": 1, "valid": 0.2, "history": hist_old, "run_dir": str(old)},
        {"group": "g", "variant": "llm", "point": "a", "seed": 2, "valid": 0.4, "history": hist_new,
         "run_dir": str(tmp_path / "new")}])
    t = _validation_table(trials).set_index("variant")
    assert np.isnan(t.loc[BASE, "kt share %"])
    # seed 1: 0.25 * 2 / (0.25 * 2 + 0.75 * 3) = 0.5 / 2.75; seed 2: mean(0.3, 0.1) over its transfer epochs
    assert t.loc["llm", "kt share %"] == pytest.approx(100 * (0.5 / 2.75 + 0.2) / 2)
    assert (t.loc["llm", "valid"], t.loc["llm", "std"], t.loc["llm", "seeds"]) == (pytest.approx(0.3), pytest.approx(0.1), 2)


def test_more_report_metrics_are_mean_and_std_over_seeds_and_unknown_names_are_refused(tmp_path):
    from llmkt.experiments.report import _metrics_table

    test = pd.DataFrame([
        {"group": "g", "variant": BASE, "seed": 1, "value": 0.1, "metrics": {"Recall@20": 0.2, "NDCG@10": 0.1}},
        {"group": "g", "variant": BASE, "seed": 2, "value": 0.3, "metrics": {"Recall@20": 0.4, "NDCG@10": 0.3}},
        {"group": "g", "variant": "llm", "seed": 1, "value": 0.5, "metrics": {"Recall@20": 0.6}},
    ])
    t = _metrics_table(test, ["Recall@20", "NDCG@10"])
    assert t.to_dict("records") == [
        {"group": "g", "variant": BASE, "Recall@20": "0.3000 ± 0.1000", "NDCG@10": "0.2000 ± 0.1000"},
        {"group": "g", "variant": "llm", "Recall@20": "0.6000 ± 0.0000", "NDCG@10": ""}]
    spec = yaml.safe_load(tiny_study(tmp_path).read_text())
    spec["report_metrics"] = ["Recall@20", "NDGC@10"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="NDGC@10"):
        load_study_config(path)


def test_read_selection_and_cell_run_dir(tmp_path):
    # the helpers benchmark scripts use to reach a reported study's chosen runs
    with pytest.raises(DataError, match=r"selection.json does not exist; run `llmkt study report`"):
        read_selection(tmp_path)
    (tmp_path / "selection.json").write_text(json.dumps({"study": "s", "choices": [{"cells": ["abc123"]}]}))
    assert read_selection(tmp_path)["choices"][0]["cells"] == ["abc123"]
    with pytest.raises(DataError, match="no run folder for cell 'abc123'"):
        cell_run_dir(tmp_path, "abc123")
    (tmp_path / "trials" / "llm-s1-abc123").mkdir(parents=True)
    (tmp_path / "trials" / "none-s1-abc1234").mkdir()  # another cell whose id only starts alike
    assert cell_run_dir(tmp_path, "abc123") == tmp_path / "trials" / "llm-s1-abc123"
    (tmp_path / "trials" / "none-s2-abc123").mkdir()
    with pytest.raises(DataError, match="2 run folders for cell 'abc123'"):
        cell_run_dir(tmp_path, "abc123")


def test_point_test_averages_per_user_over_runs(tmp_path):
    pytest.importorskip("pyarrow")
    dirs = []
    for seed, (vals, mean) in enumerate([([0.0, 1.0, 0.5], 0.5), ([1.0, 0.0], 0.5)], start=1):
        d = tmp_path / f"llm-s{seed}-c{seed}"
        d.mkdir()
        pd.DataFrame({"uid": [1, 2, 3][:len(vals)], "NDCG@20": vals}).to_parquet(d / "test_per_user.parquet")
        (d / "test.json").write_text(json.dumps({"metrics": {"NDCG@20": mean}}))
        dirs.append(d)
    per_user, values = point_test(dirs, "NDCG@20")
    assert values == [0.5, 0.5]
    assert per_user.to_dict() == {1: 0.5, 2: 0.5, 3: 0.5}  # user 3 is in one run only: its own value
