"""BPR-MF, NeuMF, SimpleX: shapes, exact loss values, learning on a tiny dataset, pair batches."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from llmkt.data import Dataset
from llmkt.models.bprmf import BPRMF
from llmkt.models.neumf import NeuMF
from llmkt.models.simplex import SimpleX
from llmkt.training.batches import PairBatches, PairScorer


def test_bpr_loss_exact_on_a_hand_made_batch():
    m = BPRMF(n_items=3, n_users=2, dim=2, reg=0.5)
    with torch.no_grad():
        m.user_emb.weight[:] = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
        m.item_emb.weight[:] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.5, 0.0], [0.0, -1.0]])
    batch = {"uid": torch.tensor([1, 2]), "pos": torch.tensor([1, 1]), "neg": torch.tensor([[2, 3], [2, 3]])}
    # user 1: s_pos = 1, s_neg = (0.5, 0); user 2: s_pos = 2, s_neg = (0, -2)
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    bpr = (sp(-0.5) + sp(-1) + sp(-2) + sp(-4)) / 4
    # reg: 0.5 * 0.5 * mean over users of |u|^2 + |p|^2 + mean_k |n_k|^2 = (1 + 2 + 0.625) and (4 + 2 + 0.625)
    reg = 0.25 * ((1 + 2 + 0.625) + (4 + 2 + 0.625)) / 2
    assert m.loss(batch).item() == pytest.approx(bpr + reg, rel=1e-6)
    s = m.score({"uid": torch.tensor([1, 2])})
    assert s.shape == (2, 4) and s[0, 0] == -torch.inf
    assert s[:, 1:].tolist() == [[1.0, 0.5, 0.0], [2.0, 0.0, -2.0]]


def test_simplex_cosine_contrastive_loss_exact():
    m = SimpleX(n_items=3, n_users=1, dim=2, hist_len=2, gamma=1.0, margin=0.5, neg_weight=2.0, dropout=0.0,
                n_negatives=2)
    with torch.no_grad():
        m.user_emb.weight[:] = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        m.item_emb.weight[:] = torch.tensor([[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    batch = {"uid": torch.tensor([1]), "pos": torch.tensor([1]), "neg": torch.tensor([[2, 3]]),
             "hist": torch.tensor([[0, 1]])}
    # cos(u, pos) = 1; cos(u, negs) = (0.7071, 0); relu(cos - 0.5) = (0.2071, 0); loss = 0 + 2 * mean = 0.2071
    assert m.loss(batch).item() == pytest.approx(2 * (math.sqrt(0.5) - 0.5) / 2, rel=1e-5)
    m.eval()
    s = m.score({"uid": torch.tensor([1]), "hist": torch.tensor([[0, 1]])})
    assert s[0, 1:].tolist() == pytest.approx([1.0, math.sqrt(0.5), 0.0], abs=1e-6)


def test_simplex_aggregates_history_ignoring_padding():
    m = SimpleX(n_items=3, n_users=1, dim=2, hist_len=3, gamma=0.0, dropout=0.0)
    with torch.no_grad():
        m.item_emb.weight[:] = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [9.0, 9.0]])
        m.aggregate.weight[:] = torch.eye(2)
    u = m.user_representation({"uid": torch.tensor([1]), "hist": torch.tensor([[0, 1, 2]])})
    assert u.tolist() == [[1.0, 2.0]]  # mean of items 1 and 2 only


def test_neumf_candidates_keep_the_user_on_dim_0_and_score_in_chunks():
    torch.manual_seed(0)
    m = NeuMF(n_items=7, n_users=3, gmf_dim=4, mlp_dims=[8, 6, 4], dropout=0.3, n_negatives=2, score_chunk=3).eval()
    batch = {"uid": torch.tensor([1, 3]), "pos": torch.tensor([2, 5]), "neg": torch.tensor([[1, 7], [3, 4]])}
    seen = {}
    h = m.mlp[1].register_forward_hook(lambda mod, i, o: seen.update(shape=tuple(o.shape)))
    m.loss(batch)
    h.remove()
    assert seen["shape"] == (2, 3, 4)
    assert m.sequence_mask(batch).shape == (2, 3)
    s = m.score({"uid": torch.tensor([1, 3])})
    direct = m._logits(torch.tensor([1, 3]), torch.arange(1, 8).expand(2, -1))
    assert s.shape == (2, 8) and torch.allclose(s[:, 1:], direct, atol=1e-6)


def _tiny():
    rng = np.random.default_rng(0)
    rows = [(u, i, 4, t) for u in range(12) for t, i in enumerate(rng.choice(np.arange(u % 3 * 5, u % 3 * 5 + 6),
                                                                             size=5, replace=False))]
    return Dataset.from_frames(pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]))


@pytest.mark.parametrize("make", [lambda n, u: BPRMF(n, u, dim=8),
                                  lambda n, u: NeuMF(n, u, gmf_dim=8, mlp_dims=[16, 8], n_negatives=2),
                                  lambda n, u: SimpleX(n, u, dim=8, hist_len=5, n_negatives=4, neg_weight=5,
                                                       margin=0.2, dropout=0.0)])
def test_loss_decreases_on_a_tiny_dataset(make):
    torch.manual_seed(0)
    ds = _tiny()
    m = make(ds.n_items, ds.n_users)
    batches = PairBatches(ds.interactions, ds.n_users, ds.n_items, batch_size=16, n_negatives=m.n_negatives,
                          hist_len=m.hist_len, seed=0)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    losses = []
    for epoch in range(30):
        total = 0.0
        for b in batches.epoch(epoch):
            loss = m.loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total)
    assert losses[-1] < 0.6 * losses[0]
    m.eval()
    s = PairScorer(m, ds.interactions, ds.n_users, m.hist_len)(np.array([1, 2]))
    assert s.shape == (2, ds.n_items + 1) and torch.isinf(s[:, 0]).all()


def test_pair_batches_never_sample_a_training_positive_and_are_seeded():
    ds = _tiny()
    pb = PairBatches(ds.interactions, ds.n_users, ds.n_items, batch_size=7, n_negatives=5, hist_len=3, seed=1)
    known = set(zip(ds.interactions["uid"], ds.interactions["iid"]))
    rows = 0
    for b in pb.epoch(0):
        rows += len(b["uid"])
        for u, negs in zip(b["uid"].tolist(), b["neg"].tolist()):
            assert all((u, n) not in known and 1 <= n <= ds.n_items for n in negs)
        assert b["hist"].shape == (len(b["uid"]), 3)
    assert rows == len(ds.interactions)
    a = [b["neg"] for b in pb.epoch(3)]
    c = [b["neg"] for b in PairBatches(ds.interactions, ds.n_users, ds.n_items, 7, 5, 3, seed=1).epoch(3)]
    assert all(torch.equal(x, y) for x, y in zip(a, c))
