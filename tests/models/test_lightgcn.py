"""LightGCN: the normalised adjacency and propagation by hand, caching, and a run through the runner."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

import llmkt
from llmkt.models.lightgcn import LightGCN, normalized_adjacency

R2 = 1 / math.sqrt(2)


def _tiny_graph(n_layers: int) -> LightGCN:
    # users 1, 2; items 1, 2; training pairs (u1, i1), (u1, i2), (u2, i1); (u1, i1) twice counts once
    m = LightGCN(n_items=2, n_users=2, dim=1, n_layers=n_layers, reg=0.0)
    with torch.no_grad():
        m.user_emb.weight.copy_(torch.tensor([[0.0], [1.0], [2.0]]))
        m.item_emb.weight.copy_(torch.tensor([[0.0], [3.0], [4.0]]))
    m.set_graph(torch.tensor([1, 1, 2, 1]), torch.tensor([1, 2, 1, 1]))
    return m


def test_normalized_adjacency_by_hand():
    a = normalized_adjacency(torch.tensor([1, 1, 2, 1]), torch.tensor([1, 2, 1, 1]), 2, 2).to_dense()
    # nodes: 0 pad user, 1 u1, 2 u2, 3 pad item, 4 i1, 5 i2; degrees u1 2, u2 1, i1 2, i2 1
    want = torch.zeros(6, 6)
    want[1, 4] = want[4, 1] = 1 / math.sqrt(2 * 2)
    want[1, 5] = want[5, 1] = 1 / math.sqrt(2 * 1)
    want[2, 4] = want[4, 2] = 1 / math.sqrt(1 * 2)
    torch.testing.assert_close(a, want)


def test_propagation_on_a_four_node_graph_equals_the_hand_computed_result():
    users, items = _tiny_graph(1).propagate()
    # E1(u1) = 0.5 * 3 + 4 / sqrt 2, E1(u2) = 3 / sqrt 2, E1(i1) = 0.5 * 1 + 2 / sqrt 2, E1(i2) = 1 / sqrt 2;
    # final = (E0 + E1) / 2; padding rows stay 0
    torch.testing.assert_close(users[:, 0], torch.tensor([0.0, (1 + 1.5 + 4 * R2) / 2, (2 + 3 * R2) / 2]))
    torch.testing.assert_close(items[:, 0], torch.tensor([0.0, (3 + 0.5 + 2 * R2) / 2, (4 + R2) / 2]))
    # two layers: E2 = Â E1, final = (E0 + E1 + E2) / 3; E2(u1) = 0.5 E1(i1) + E1(i2) / sqrt 2
    users2, _ = _tiny_graph(2).propagate()
    e1_i1, e1_i2 = 0.5 + 2 * R2, R2
    assert users2[1, 0].item() == pytest.approx((1 + (1.5 + 4 * R2) + (0.5 * e1_i1 + R2 * e1_i2)) / 3, rel=1e-6)
    # no layers: LightGCN is matrix factorisation
    users0, items0 = _tiny_graph(0).propagate()
    assert users0[:, 0].tolist() == [0.0, 1.0, 2.0] and items0[:, 0].tolist() == [0.0, 3.0, 4.0]


def test_scores_use_the_propagated_embeddings_and_eval_caches_them_until_training():
    m = _tiny_graph(1)
    m.eval()
    s = m.score({"uid": torch.tensor([1, 2])})
    users, items = m.propagate()
    assert s.shape == (2, 3) and torch.isinf(s[:, 0]).all()
    torch.testing.assert_close(s[:, 1:], users[1:] @ items[1:].T)
    assert m.propagate()[0] is users  # cached in eval mode
    with torch.no_grad():
        m.user_emb.weight[1] = 10.0
    m.train()
    m.eval()
    assert m.propagate()[0][1, 0].item() != users[1, 0].item()  # train() cleared the cache
    with pytest.raises(RuntimeError, match="set_graph"):
        LightGCN(2, 2, dim=1).propagate()


def test_bpr_gradient_reaches_every_node_within_reach():
    m = _tiny_graph(1)
    loss = m.loss({"uid": torch.tensor([2]), "pos": torch.tensor([1]), "neg": torch.tensor([[2]])})
    loss.backward()
    # u2's final embedding mixes i1; i1's mixes u1: one layer reaches u1, u2, i1, i2
    assert (m.user_emb.weight.grad[1:] != 0).all() and (m.item_emb.weight.grad[1:] != 0).all()


def test_lightgcn_trains_through_the_runner_with_transfer_at_its_default_layer(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(u, int(i), t) for u in range(1, 31) for t, i in enumerate(rng.choice(40, 10, replace=False) + 1)]
    folder = tmp_path / "data"
    folder.mkdir()
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(folder / "interactions.csv", index=False)
    users = np.arange(1, 31)
    vec = tmp_path / "v.npz"
    llmkt.data.ProfileVectors(users, rng.normal(size=(30, 8)), {"dataset": "csv"}).save(vec)
    cfg = {"data": {"name": "csv", "path": str(folder)}, "split": {"kind": "leave_one_out"},
           "model": {"name": "lightgcn", "dim": 8, "n_layers": 2},
           "training": {"epochs": 3, "batch_size": 64, "progress": False, "device": "cpu"},
           "output": {"dir": str(tmp_path / "runs")},
           "transfer": {"vectors": {"path": str(vec)}, "alpha": 0.5, "reducer": {"method": "none"},
                        "compare_base": False}}
    res = llmkt.train(cfg)
    assert res.transfer["layer"] == "user_out" and 0 < res.test.metrics["NDCG@10"] <= 1
    from llmkt.experiments.evaluate import evaluate_run

    again = evaluate_run(res.run_dir, "test")  # the graph is rebuilt from the split, not stored
    assert again.metrics == pytest.approx(res.test.metrics)
