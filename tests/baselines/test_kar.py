import numpy as np
import pytest
import torch

import llmkt
from llmkt.baselines.kar import KAR, HybridExpertAdaptor
from llmkt.data import Dataset
from llmkt.models.deepfm import DeepFM
from llmkt.data.vectors import ProfileVectors
from tests.conftest import random_interactions


def test_gates_are_softmax_per_knowledge_type_and_mix_shared_and_specific_experts():
    torch.manual_seed(0)
    a = HybridExpertAdaptor({"user": 6, "item": 6}, d_out=4, n_shared=2, n_specific=3, hidden=8)
    x = {"user": torch.randn(5, 6), "item": torch.randn(5, 6)}
    out = a(x)
    assert out["user"].shape == (5, 4) and out["item"].shape == (5, 4)
    for t in ("user", "item"):
        g = a.gates[t]
        assert g.shape == (5, 5) and torch.allclose(g.sum(-1), torch.ones(5)) and (g > 0).all()
        experts = torch.stack([e(x[t]) for e in [*a.shared, *a.specific[t]]], 1)
        torch.testing.assert_close(out[t], (g.unsqueeze(-1) * experts).sum(1))
    # the item type never uses the user-specific experts
    assert not torch.allclose(a.gates["user"], a.gates["item"])
    with pytest.raises(ValueError, match="one width"):
        HybridExpertAdaptor({"user": 6, "item": 5}, d_out=4)


def test_zero_knowledge_reduces_to_the_backbone():
    torch.manual_seed(0)
    n_users, n_items = 4, 6
    backbone = DeepFM(n_items, n_users, embed_dim=4, hidden=[8], n_extra_fields=2).eval()
    kar = KAR(backbone, torch.zeros(n_users + 1, 5), torch.zeros(n_items + 1, 5)).eval()
    b = {"uid": torch.tensor([1, 2, 3]), "iid": torch.tensor([4, 5, 6])}
    plain = backbone.logits(b, [torch.zeros(3, 4), torch.zeros(3, 4)])
    torch.testing.assert_close(kar.logits(b), plain)
    # with knowledge the prediction moves
    kar.user_knowledge.normal_()
    assert not torch.allclose(kar.logits(b), plain)
    with pytest.raises(ValueError, match="n_extra_fields=2"):
        KAR(DeepFM(n_items, n_users, embed_dim=4, hidden=[8]), torch.zeros(5, 5), torch.zeros(7, 5))


def test_kar_through_the_runner(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    random_interactions(n_users=40, n_items=30, per_user=10).to_csv(folder / "interactions.csv", index=False)
    ds = Dataset.from_frames(random_interactions(n_users=40, n_items=30, per_user=10), name="small")
    rng = np.random.default_rng(0)
    users = ProfileVectors(ds.user_map.external_ids[:30], rng.normal(size=(30, 8)), {"encoder": "random"})
    items = ProfileVectors(ds.item_map.external_ids, rng.normal(size=(ds.n_items, 8)), {"encoder": "random"})
    cfg = {"model": {"name": "kar", "backbone": {"name": "dcn", "embed_dim": 4, "hidden": [8]},
                     "user_knowledge": {"path": str(users.save(tmp_path / "u.npz"))},
                     "item_knowledge": {"path": str(items.save(tmp_path / "i.npz"))}, "expert_hidden": 8},
           "split": {"kind": "ratio"}, "data": {"name": "csv", "path": str(folder), "positive_rating": 3},
           "training": {"epochs": 2, "batch_size": 32, "progress": False}, "output": {"dir": str(tmp_path / "runs")}}
    res = llmkt.train(cfg)
    assert set(res.test.metrics) == {"AUC", "LogLoss"}
    assert res.model_info["user_coverage"] == pytest.approx(0.75) and res.model_info["item_coverage"] == 1.0
    assert res.summary()["model_info"]["knowledge_dim"] == 8
    # a run can be re-evaluated from its folder
    from llmkt.experiments.evaluate import evaluate_run

    again = evaluate_run(res.run_dir, "test")
    assert again.metrics == pytest.approx(res.test.metrics)
    # the shuffled-knowledge control: same users covered, other users' vectors
    cfg["model"]["user_knowledge"]["control"] = "shuffle"
    ctl = llmkt.train(cfg)
    assert ctl.model_info["user_knowledge"]["control"] == "shuffle"
    assert ctl.model_info["user_coverage"] == pytest.approx(0.75)
    assert not torch.equal(ctl.model.user_knowledge, res.model.user_knowledge)
