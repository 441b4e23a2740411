"""Text baselines: cosine ranking by profile vectors, the standardised score-sum ensemble, its weight chosen on
validation only."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import llmkt
from llmkt.baselines.text import EnsembleScorer, TextScorer, choose_weight, standardize
from llmkt.cli import main
from llmkt.data import Dataset, ProfileVectors
from tests.conftest import random_interactions


def test_text_scorer_is_the_cosine_and_zero_without_a_vector():
    users = np.array([[0, 0], [3, 4], [0, 0]], dtype=np.float32)  # user 2 has no vector
    items = np.array([[0, 0], [1, 0], [0, 2], [1, 1]], dtype=np.float32)
    s = TextScorer(users, items)(np.array([1, 2]))
    assert torch.isinf(s[:, 0]).all()
    torch.testing.assert_close(s[0, 1:], torch.tensor([0.6, 0.8, 0.7 * 2 ** 0.5]))
    assert s[1, 1:].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="same encoder"):
        TextScorer(users, np.zeros((4, 3), dtype=np.float32))


def test_standardize_and_the_ensemble_sum():
    a = torch.tensor([[-torch.inf, 1.0, 2.0, 3.0], [-torch.inf, 5.0, 5.0, 5.0]])
    z = standardize(a)
    torch.testing.assert_close(z[0, 1:], torch.tensor([-1.0, 0.0, 1.0]))
    assert z[1, 1:].tolist() == [0.0, 0.0, 0.0] and torch.isinf(z[:, 0]).all()
    b = torch.tensor([[-torch.inf, 3.0, 2.0, 1.0], [-torch.inf, 1.0, 2.0, 3.0]])
    e = EnsembleScorer(lambda u: a[u], lambda u: b[u], 0.5)(np.array([0, 1]))
    torch.testing.assert_close(e[:, 1:], torch.tensor([[-0.5, 0.0, 0.5], [-0.5, 0.0, 0.5]]))


def test_choose_weight_takes_the_validation_best_and_the_smaller_on_ties():
    assert choose_weight({0.0: 0.1, 0.5: 0.3, 1.0: 0.2}.get, [1.0, 0.5, 0.0]) == (0.5, {0.0: 0.1, 0.5: 0.3, 1.0: 0.2})
    assert choose_weight(lambda w: 0.2, [0.0, 1.0])[0] == 0.0  # text that does not help is not added


@pytest.fixture
def trained(tmp_path):
    ds = Dataset.from_frames(random_interactions(n_users=40, n_items=30, per_user=10), name="small")
    rng = np.random.default_rng(0)
    users = ProfileVectors(ds.user_map.external_ids, rng.normal(size=(40, 8)), {"dataset": "small"})
    items = ProfileVectors(ds.item_map.external_ids, rng.normal(size=(30, 8)), {"dataset": "small", "entity": "item"})
    folder = tmp_path / "data"
    folder.mkdir()
    ds.interactions[["user_id", "item_id", "timestamp"]].to_csv(folder / "interactions.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(folder)}, "model": {"name": "bprmf", "dim": 8},
           "training": {"epochs": 3, "batch_size": 32, "progress": False}, "output": {"dir": str(tmp_path / "runs")}}
    res = llmkt.train(cfg)
    for pv in (users, items):
        pv.meta["dataset"] = "csv"
    return res, users.save(tmp_path / "u.npz"), items.save(tmp_path / "i.npz")


def test_the_ensemble_weight_is_chosen_on_validation_and_test_is_read_once(trained, monkeypatch):
    from llmkt.experiments import baselines, runner

    res, u, i = trained
    calls = []
    real = runner.evaluate_scorer
    monkeypatch.setattr(runner, "evaluate_scorer",
                        lambda scorer, split, stage, *a: calls.append((type(scorer).__name__, stage))
                        or real(scorer, split, stage, *a))
    r = baselines.text_baselines(str(u), str(i), run_dir=res.run_dir, weights=(0.0, 0.5, 2.0))
    assert set(r.curve) == {0.0, 0.5, 2.0} and r.weight == max(r.curve, key=lambda w: (r.curve[w], -w))
    assert calls.count(("EnsembleScorer", "test")) == 1 and calls.count(("EnsembleScorer", "valid")) == 3
    assert r.curve[0.0] == pytest.approx(r.model["valid"].metrics["NDCG@10"])  # weight 0 = the model alone
    assert r.model["test"].metrics["NDCG@10"] == pytest.approx(res.test.metrics["NDCG@10"])
    assert r.info["user_coverage"] == 1.0 and r.info["item_coverage"] == 1.0


def test_the_cli_prints_text_model_and_ensemble(trained, tmp_path):
    res, u, i = trained
    out = CliRunner().invoke(main, ["baseline", "text", "--run", str(res.run_dir), "--users", str(u), "--items",
                                    str(i), "--weights", "0,1", "-o", str(tmp_path / "s.json")])
    assert out.exit_code == 0, out.output
    assert "text only: valid NDCG@10" in out.output and "ensemble: weight" in out.output
    summary = json.loads((tmp_path / "s.json").read_text())
    assert set(summary["ensemble_valid_curve"]) == {"0.0", "1.0"}
    bad = CliRunner().invoke(main, ["baseline", "text", "--run", str(res.run_dir), "--users", str(i), "--items",
                                    str(i)])
    assert bad.exit_code == 2 and "user vectors: these are item vectors" in bad.output, bad.output


def test_popularity_ranks_by_training_counts_on_the_configs_split(tmp_path):
    # item 9 is in every training history but user 4's: popularity recommends it to user 4 first
    rows = [(u, i, t) for u in (1, 2, 3) for t, i in enumerate((9, 10 + u, 20 + u, 30 + u))]
    rows += [(4, 5, 0), (4, 6, 1), (4, 7, 2), (4, 9, 3)]  # leave-one-out: user 4's test item is 9
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{name: csv, path: {folder}}}\nsplit: {{kind: leave_one_out}}\nmodel: {{name: bprmf}}\n"
                   "evaluation: {ks: [1]}\n")
    out = CliRunner().invoke(main, ["baseline", "popularity", str(cfg), "-o", str(tmp_path / "p.json")])
    assert out.exit_code == 0, out.output
    metrics = json.loads((tmp_path / "p.json").read_text())
    from llmkt.experiments.baselines import popularity_baseline

    hit = popularity_baseline(str(cfg))["test"].per_user.set_index("user_id")["HR@1"]
    assert hit.loc[4] == 1.0 and hit.drop(4).sum() == 0.0  # the others' test items were seen once or never
    assert metrics["test"]["metrics"]["HR@1"] == 0.25
    assert "popularity test [full ranking" in out.output
    bad = CliRunner().invoke(main, ["baseline", "popularity", str(tmp_path / "none.yaml")])
    assert bad.exit_code == 2
