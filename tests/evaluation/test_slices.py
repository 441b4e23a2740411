"""Slices: items by popularity, users by history length, the cold-start protocol."""

import numpy as np
import pandas as pd
import pytest

import llmkt
from llmkt.data import Dataset, leave_one_out
from llmkt.evaluation.slices import cold_items_split, item_popularity_buckets, user_history_buckets
from tests.conftest import random_interactions


def test_buckets_by_hand():
    rows = [("a", "x", 1), ("b", "x", 2), ("c", "x", 3), ("a", "y", 4), ("b", "y", 5), ("a", "z", 6),
            ("c", "w", 7), ("a", "q", 8), ("b", "q", 9), ("c", "q", 10)]
    ds = Dataset.from_frames(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))
    split = leave_one_out(ds)  # a: x y | z | q ; b: x | y | q ; c: x | w | q
    b = item_popularity_buckets(split, (0.2, 0.8))  # 5 items: 1 head, 3 torso, 1 tail
    ext = {k: sorted(ds.item_map.to_external(v)) for k, v in b.items()}
    # training rows: x 3, y 1, z w q 0 (ties: internal id order, z < w < q by first appearance)
    assert ext == {"head": ["x"], "torso": ["w", "y", "z"], "tail": ["q"]}
    u = {k: sorted(ds.user_map.to_external(v)) for k, v in user_history_buckets(split, (2,)).items()}
    assert u == {"<2": ["b", "c"], ">=2": ["a"]}


def test_cold_items_keep_their_earliest_interactions_only():
    ds = Dataset.from_frames(random_interactions(n_users=30, n_items=20, per_user=8, seed=1))
    split = leave_one_out(ds)
    cold_split, cold = cold_items_split(split, 0.5, keep=1, seed=0)
    test_items = np.unique(split.test["iid"])
    assert len(cold) == round(0.5 * len(test_items)) and set(cold) <= set(test_items)
    counts = cold_split.train[cold_split.train["iid"].isin(cold)].groupby("iid").size()
    assert counts.max() == 1  # each cold item keeps one training interaction
    before = split.train[split.train["iid"].isin(cold)]
    first = before.sort_values(["timestamp", "order"]).groupby("iid").head(1)
    kept = cold_split.train[cold_split.train["iid"].isin(cold)]
    assert sorted(map(tuple, kept[["uid", "iid"]].to_numpy())) == sorted(map(tuple, first[["uid", "iid"]].to_numpy()))
    assert len(cold_split.test) == len(split.test) and cold_split.params["cold_items"]["train_rows_removed"] > 0


def test_a_run_reports_slices_and_evaluate_repeats_them(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    random_interactions(n_users=40, n_items=30, per_user=10, seed=2).to_csv(folder / "interactions.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(folder)}, "model": {"name": "bprmf", "dim": 8},
           "training": {"epochs": 2, "progress": False, "device": "cpu"}, "output": {"dir": str(tmp_path / "r")},
           "evaluation": {"slices": {"user_history": [8], "cold_items": {"share": 0.3, "keep": 0}}}}
    res = llmkt.train(cfg)
    sl = res.slices
    assert set(sl) == {"users <8 train", "users >=8 train", "items head", "items torso", "items tail", "items cold",
                       "items warm"}
    assert sl["users <8 train"]["users"] + sl["users >=8 train"]["users"] == len(res.test.per_user)
    assert sl["items cold"]["targets"] + sl["items warm"]["targets"] == len(res.split.test)
    cold = res.split.dataset.item_map.to_internal(np.asarray(res.split.params["cold_items"]["item_ids"]))
    assert not res.split.train["iid"].isin(cold).any()  # removed from training
    ev = llmkt.evaluate_run(res.run_dir)
    assert ev.extra["slices"]["items cold"] == pytest.approx(sl["items cold"])
