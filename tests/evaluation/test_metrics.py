import math

import numpy as np
import pytest

from llmkt.evaluation.metrics import log_loss, parse_metric, ranking_metrics, roc_auc


def test_single_target_known_ranking():
    # user 0: relevant item 7 at rank 3; user 1: relevant item 9 not in top 5
    topk = np.array([[1, 2, 7, 4, 5], [1, 2, 3, 4, 5]])
    rel = np.array([[7], [9]])
    m = ranking_metrics(topk, rel, [3, 5])
    assert m["NDCG@5"][0] == pytest.approx(1 / math.log2(4))
    assert m["NDCG@5"][1] == 0.0
    assert m["HR@3"].tolist() == [1.0, 0.0]
    assert m["MRR@5"][0] == pytest.approx(1 / 3)
    assert m["Precision@5"][0] == pytest.approx(1 / 5)
    assert m["Recall@3"].tolist() == [1.0, 0.0]


def test_multi_target_ndcg_and_recall():
    # relevant {1, 3, 8}; list 1, 2, 3, 4 -> hits at ranks 1 and 3
    topk = np.array([[1, 2, 3, 4]])
    rel = np.array([[1, 3, 8, 0]])  # 0 = padding
    m = ranking_metrics(topk, rel, [4])
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["NDCG@4"][0] == pytest.approx(dcg / idcg)
    assert m["Recall@4"][0] == pytest.approx(2 / 3)
    assert m["HR@4"][0] == 1.0
    assert m["MRR@4"][0] == 1.0


def test_padding_zero_never_counts_as_hit():
    topk = np.array([[0, 0, 5]])
    rel = np.array([[5, 0]])
    m = ranking_metrics(topk, rel, [2, 3])
    assert m["HR@2"][0] == 0.0 and m["HR@3"][0] == 1.0


def test_users_without_relevant_items_are_rejected():
    with pytest.raises(ValueError, match="no relevant item"):
        ranking_metrics(np.array([[1, 2]]), np.array([[0]]), [2])


def test_parse_metric():
    assert parse_metric("NDCG@10") == ("NDCG", 10)
    with pytest.raises(ValueError, match="NAME@K"):
        parse_metric("ndcg10")


def test_auc_and_logloss_hand_values():
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.8, 0.3, 0.1])
    # pairs (pos, neg): (0.9>0.8) (0.9>0.1) (0.3<0.8) (0.3>0.1) -> 3/4
    assert roc_auc(y, s) == pytest.approx(0.75)
    assert roc_auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)  # tie counts 1/2
    expected = -(math.log(0.9) + math.log(0.2) + math.log(0.3) + math.log(0.9)) / 4
    assert log_loss(y, s) == pytest.approx(expected)
