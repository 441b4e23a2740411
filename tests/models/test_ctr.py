"""DeepFM and DCN: side features, exact FM / cross computations, learning, click evaluation."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from llmkt.data import Dataset
from llmkt.data.features import build_features
from llmkt.evaluation.ctr import evaluate_ctr
from llmkt.models.dcn import DCN, CrossLayer
from llmkt.models.deepfm import DeepFM
from llmkt.training.batches import CTRBatches


@pytest.fixture
def ds():
    inter = pd.DataFrame([(1, 10, 5, 1), (1, 11, 2, 2), (2, 10, 4, 3), (2, 12, 1, 4), (3, 11, 5, 5), (3, 12, 3, 6)],
                         columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": [10, 11, 12], "year": pd.array([1995, 1972, None], dtype="Int64"),
                          "genres": ["Drama|War", "Comedy", ""], "title": ["a", "b", "c"]})
    users = pd.DataFrame({"user_id": [1, 2, 3], "age": [23, 40, 61], "gender": ["F", "M", "F"],
                          "occupation": ["artist", "doctor", "artist"]})
    return Dataset.from_frames(inter, items, users)


def test_feature_tables(ds):
    ft = build_features(ds)
    assert ft.item_fields == ["decade"] and ft.multi_field == "genres"
    iid = ds.item_map.to_internal([10, 11, 12])
    assert ft.item_codes[iid, 0].tolist() == [2, 1, 0]  # 1970s -> 1, 1990s -> 2, unknown -> 0
    assert ft.item_multi[iid].tolist() == [[2, 3], [1, 0], [0, 0]]  # Comedy 1, Drama 2, War 3
    uid = ds.user_map.to_internal([1, 2, 3])
    assert ft.user_fields == ["gender", "age", "occupation"]
    assert ft.user_codes[uid].tolist() == [[1, 1, 1], [2, 2, 2], [1, 3, 1]]  # ages 23, 40, 61: buckets 1, 3, 6
    assert ft.n_fields == 5


def test_genre_histograms_are_normalised_per_user_in_vocabulary_order(ds):
    from llmkt.data.features import genre_histograms, genre_vocab

    assert genre_vocab(ds) == ["Comedy", "Drama", "War"]
    hist = genre_histograms(ds, ds.interactions)
    uid = ds.user_map.to_internal([1, 2, 3])
    # user 1: items 10 (Drama, War) and 11 (Comedy); user 2: 10 and 12 (no genre); user 3: 11 and 12
    assert hist.dtype == np.float32
    np.testing.assert_allclose(hist[uid], [[1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5], [1, 0, 0]], rtol=1e-6)
    assert hist.shape == (4, 3) and hist[0].tolist() == [0, 0, 0]


def test_deepfm_fm_term_matches_pairwise_sum(ds):
    torch.manual_seed(0)
    m = DeepFM(ds.n_items, ds.n_users, embed_dim=4, hidden=[8], features=build_features(ds)).eval()
    b = {"uid": torch.tensor([1, 2]), "iid": torch.tensor([1, 3])}
    emb, first = m.embed(b)
    assert emb.shape == (2, 7, 4)  # user, item, gender, age, occupation, decade, genres
    pairs = sum((emb[:, i] * emb[:, j]).sum(-1) for i in range(7) for j in range(i + 1, 7))
    deep = m.dnn_out(m.dnn(emb.flatten(1))).squeeze(-1)
    torch.testing.assert_close(m.logits(b), m.bias + first + pairs + deep)


def test_cross_layer_exact():
    c = CrossLayer(2)
    with torch.no_grad():
        c.w[:] = torch.tensor([1.0, 2.0])
        c.b[:] = torch.tensor([0.5, 0.0])
    x0 = torch.tensor([[1.0, 3.0]])
    x = torch.tensor([[2.0, -1.0]])
    # x . w = 0 -> x0 * 0 + b + x
    assert c(x0, x).tolist() == [[2.5, -1.0]]
    assert c(x0, x0).tolist() == [[1 * 7 + 0.5 + 1, 3 * 7 + 3]]


@pytest.mark.parametrize("cls", [DeepFM, DCN])
def test_zero_extra_fields_reduce_to_the_backbone_and_learning_works(ds, cls):
    torch.manual_seed(0)
    m = cls(ds.n_items, ds.n_users, embed_dim=4, hidden=[8], features=build_features(ds), n_extra_fields=2).eval()
    b = {"uid": torch.tensor([1, 2, 3]), "iid": torch.tensor([1, 2, 3])}
    zeros = [torch.zeros(3, 4), torch.zeros(3, 4)]
    torch.testing.assert_close(m.logits(b), m.logits(b, zeros))
    assert not torch.allclose(m.logits(b), m.logits(b, [torch.ones(3, 4), torch.ones(3, 4)]))
    m.train()
    batches = CTRBatches(ds.interactions, batch_size=6, positive_rating=4)
    opt = torch.optim.Adam(m.parameters(), lr=0.05)
    first = None
    for epoch in range(40):
        for batch in batches.epoch(epoch):
            loss = m.loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first
    assert m.score({"uid": torch.tensor([1])}).shape == (1, ds.n_items + 1)


def test_evaluate_ctr_exact(ds):
    class Fixed(torch.nn.Module):
        def logits(self, b):
            return torch.tensor([2.0, -1.0, 0.0, 1.0, -2.0, 0.5])[: len(b["uid"])]

    rows = ds.interactions  # labels (rating >= 4) in uid order: user 1: 5, 2 -> 1, 0; user 2: 4, 1; user 3: 5, 3
    r = evaluate_ctr(Fixed(), rows, 4.0, stage="test")
    y = (rows["rating"].to_numpy() >= 4).astype(float)
    p = 1 / (1 + np.exp(-np.array([2.0, -1.0, 0.0, 1.0, -2.0, 0.5])))
    ll = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    pos, neg = p[y == 1], p[y == 0]
    auc = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert r.metrics["AUC"] == pytest.approx(auc) and r.metrics["LogLoss"] == pytest.approx(ll.mean())
    assert r.per_user["LogLoss"].tolist() == pytest.approx([ll[0:2].mean(), ll[2:4].mean(), ll[4:6].mean()])
    assert r.extra["rows"] == 6 and math.isclose(r.extra["positives"], 0.5)
