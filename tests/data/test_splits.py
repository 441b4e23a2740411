import pandas as pd
import pytest

from llmkt.data import Dataset, global_temporal, leave_one_out, ratio_split
from llmkt.data import columns as C
from llmkt.errors import DataError
from tests.conftest import random_interactions

KEY = [C.UID, C.IID, C.TIMESTAMP, C.ORDER]


def _rows(df):
    return set(map(tuple, df[KEY].to_numpy().tolist()))


def assert_leak_free(split):
    """Disjoint, complete, and per user: train <= valid <= test in (timestamp, order)."""
    tr, va, te = _rows(split.train), _rows(split.valid), _rows(split.test)
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert tr | va | te == _rows(split.dataset.interactions) or split.kind == "global_temporal"
    pos = {}
    for name, df in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        key = df[C.TIMESTAMP].astype(float) * 1e7 + df[C.ORDER]
        pos[name] = pd.DataFrame({C.UID: df[C.UID], "k": key}).groupby(C.UID)["k"].agg(["min", "max"])
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        j = pos[a].merge(pos[b], left_index=True, right_index=True, suffixes=("_a", "_b"))
        assert (j["max_a"] < j["min_b"]).all(), f"{b} interactions precede {a} ones"
    # cutoffs record the last training interaction
    cut = split.cutoffs.set_index(C.UID)
    last = split.train.groupby(C.UID)[C.TIMESTAMP].max()
    assert (cut.loc[last.index, "cutoff_timestamp"] == last).all()


def test_leave_one_out_exact(tiny_dataset):
    s = leave_one_out(tiny_dataset)
    ext = lambda df: sorted(zip(df[C.USER], df[C.ITEM]))
    assert ext(s.test) == [("a", "v"), ("b", "u"), ("c", "v")]
    assert ext(s.valid) == [("a", "w"), ("b", "w"), ("c", "x")]
    assert len(s.train) == 12 - 6
    assert_leak_free(s)
    assert s.cutoffs.set_index(C.USER).loc["a", "n_train"] == 3


def test_leave_one_out_keeps_short_users_in_train():
    df = pd.DataFrame({"user_id": ["a", "a", "b", "b", "b"], "item_id": ["x", "y", "x", "y", "z"],
                       "timestamp": [1, 2, 1, 2, 3]})
    s = leave_one_out(Dataset.from_frames(df))
    assert s.test[C.USER].tolist() == ["b"] and (s.train[C.USER] == "a").sum() == 2


def test_ratio_split_shares(tiny_dataset):
    s = ratio_split(Dataset.from_frames(random_interactions(per_user=10)), 0.7, 0.1, 0.2)
    counts = s.train.groupby(C.UID).size()
    assert (counts == 7).all()
    assert (s.valid.groupby(C.UID).size() == 1).all() and (s.test.groupby(C.UID).size() == 2).all()
    assert_leak_free(s)
    with pytest.raises(DataError, match="summing to 1"):
        ratio_split(tiny_dataset, 0.7, 0.2, 0.2)


def test_global_temporal_boundary(tiny_dataset):
    s = global_temporal(tiny_dataset, 0.5, 0.75)
    t_valid, t_test = s.params["t_valid"], s.params["t_test"]
    assert (s.train[C.TIMESTAMP] < t_valid).all()
    assert ((s.valid[C.TIMESTAMP] >= t_valid) & (s.valid[C.TIMESTAMP] < t_test)).all()
    assert (s.test[C.TIMESTAMP] >= t_test).all()
    assert_leak_free(s)


@pytest.mark.parametrize("kind", ["loo", "ratio", "global"])
def test_no_leak_on_real_data(shared_data, kind):
    from llmkt.data import load_raw, preprocess

    raw = load_raw("ml-100k", shared_data)
    ds = Dataset.from_frames(preprocess(raw.interactions), raw.items)
    s = {"loo": leave_one_out, "ratio": ratio_split, "global": global_temporal}[kind](ds)
    assert_leak_free(s)
    assert len(s.test) > 0 and len(s.valid) > 0
    # the history used to score test users never contains a test interaction
    assert not (_rows(s.history("test")) & _rows(s.test))
    assert not (_rows(s.history("valid")) & _rows(s.valid))
