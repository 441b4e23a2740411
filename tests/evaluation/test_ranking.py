import numpy as np
import pandas as pd
import pytest
import torch

from llmkt.data import leave_one_out
from llmkt.data import columns as C
from llmkt.evaluation import RankingProtocol, evaluate_ranking, paired_test


def _fixed_scorer(n_items, order):
    """Scores items so that ``order`` (best first) is the global ranking for every user."""
    base = torch.zeros(n_items + 1)
    for rank, item in enumerate(order):
        base[item] = float(n_items - rank)

    def scorer(uids):
        return base.repeat(len(uids), 1)

    return scorer


def test_seen_items_are_excluded(tiny_dataset):
    s = leave_one_out(tiny_dataset)
    n = tiny_dataset.n_items
    # rank items by internal id descending; for user 'a' the test item v should win once seen items are removed
    iid = tiny_dataset.item_map.to_internal
    order = iid(["x", "y", "z", "w", "v", "u"]).tolist()
    scorer = _fixed_scorer(n, order)
    hist, tgt = s.history("test"), s.test
    res = evaluate_ranking(scorer, hist, tgt, tiny_dataset.n_users, n, RankingProtocol(ks=[1, 6]))
    per = res.per_user.set_index(C.UID)
    ua = tiny_dataset.user_map.to_internal(["a"])[0]
    # user a saw x, y, z, w -> v is first among the remaining {v, u}
    assert per.loc[ua, "HR@1"] == 1.0
    # without exclusion, v is 5th for user a
    res2 = evaluate_ranking(scorer, hist, tgt, tiny_dataset.n_users, n,
                            RankingProtocol(ks=[1, 6], exclude_seen=False))
    assert res2.per_user.set_index(C.UID).loc[ua, "MRR@6"] == pytest.approx(1 / 5)
    assert "seen items kept" in res2.protocol and "full ranking" in res.protocol


def test_padding_column_never_recommended(tiny_dataset):
    s = leave_one_out(tiny_dataset)
    n = tiny_dataset.n_items
    tgt = s.test

    def scorer(uids):  # padding column scores highest, the test item second: the test item must be top-1
        sc = torch.zeros(len(uids), n + 1)
        sc[:, 0] = 100.0
        t = tgt.set_index(C.UID).loc[uids, C.IID].to_numpy().copy()
        sc[torch.arange(len(uids)), torch.from_numpy(t)] = 1.0
        return sc

    res = evaluate_ranking(scorer, s.history("test"), tgt, tiny_dataset.n_users, n, RankingProtocol(ks=[1]))
    assert res.metrics["HR@1"] == 1.0


def test_sampled_protocol_is_labelled_and_perfect_scorer_wins(tiny_dataset):
    s = leave_one_out(tiny_dataset)
    n = tiny_dataset.n_items
    tgt = s.test

    def oracle(uids):  # the test item of each user gets the top score
        sc = torch.zeros(len(uids), n + 1)
        t = tgt.set_index(C.UID).loc[uids, C.IID].to_numpy().copy()
        sc[torch.arange(len(uids)), torch.from_numpy(t)] = 10.0
        return sc

    p = RankingProtocol(ks=[1], kind="sampled", n_negatives=1, sampler="popularity")
    res = evaluate_ranking(oracle, s.history("test"), tgt, tiny_dataset.n_users, n, p)
    assert res.metrics["HR@1"] == 1.0
    assert res.protocol.startswith("sampled: 1 positive + 1 popularity negatives")


def test_paired_test_detects_difference():
    rng = np.random.default_rng(0)
    a = pd.DataFrame({C.UID: np.arange(200), "NDCG@10": rng.random(200) * 0.2})
    b = a.copy()
    b["NDCG@10"] = a["NDCG@10"] + 0.05 + rng.normal(0, 0.01, 200)
    r = paired_test(a, b, "NDCG@10")
    assert r.diff == pytest.approx(0.05, abs=0.01) and r.t_pvalue < 1e-10 and r.n_users == 200
    same = paired_test(a, a, "NDCG@10")
    assert same.t_pvalue == 1.0
