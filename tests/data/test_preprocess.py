import pandas as pd
import pytest

from llmkt.data.preprocess import drop_duplicates, k_core, preprocess
from llmkt.errors import DataError


def test_k_core_is_iterative():
    # round 1: item 'r' (1 interaction) goes; then user 'u2' has 1 interaction left and goes; then item 'q'
    # has 1 left and goes; then user 'u1' has only 'p' and goes ... until nothing but u3/u4 on p/s remains.
    df = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u2", "u3", "u3", "u4", "u4"],
                       "item_id": ["p", "q", "q", "r", "p", "s", "p", "s"]})
    out = k_core(df, min_user=2, min_item=2)
    assert sorted(zip(out.user_id, out.item_id)) == [("u3", "p"), ("u3", "s"), ("u4", "p"), ("u4", "s")]


def test_k_core_exact_result():
    df = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b", "b", "c"],
                       "item_id": ["x", "y", "z", "x", "y", "w", "x"]})
    out = k_core(df, min_user=2, min_item=2)
    assert sorted(zip(out.user_id, out.item_id)) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]


def test_k_core_removing_everything_fails_clearly():
    df = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]})
    with pytest.raises(DataError, match="removed all 2 interactions"):
        k_core(df, min_user=5)


def test_rating_threshold_and_duplicates():
    df = pd.DataFrame({"user_id": ["a", "a", "a", "b"], "item_id": ["x", "x", "y", "x"],
                       "rating": [5, 4, 2, 5], "timestamp": [1, 2, 3, 4]})
    out = preprocess(df, min_rating=4, duplicates="keep_last")
    assert out[["user_id", "item_id", "timestamp"]].values.tolist() == [["a", "x", 2], ["b", "x", 4]]
    first = drop_duplicates(df, "keep_first")
    assert first[first.user_id == "a"].timestamp.tolist() == [1, 3]
    assert len(drop_duplicates(df, "keep_all")) == 4


def test_rating_threshold_without_ratings_column():
    with pytest.raises(DataError, match="needs a 'rating' column"):
        preprocess(pd.DataFrame({"user_id": [1], "item_id": [2]}), min_rating=4)
