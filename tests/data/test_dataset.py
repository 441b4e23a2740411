import numpy as np
import pandas as pd
import pytest

from llmkt.data import Dataset, IdMap
from llmkt.data import columns as C
from llmkt.data.sequences import padded_sequences
from llmkt.errors import DataError


def test_idmap_roundtrip_and_padding():
    m = IdMap(["b", "a", "c", "a"])
    assert len(m) == 3
    assert m.to_internal(["a", "b", "c"]).tolist() == [2, 1, 3]
    assert m.to_external([1, 2, 3]).tolist() == ["b", "a", "c"]
    assert m.to_internal(["zz", "a"], unknown="zero").tolist() == [0, 2]
    with pytest.raises(DataError, match="unknown"):
        m.to_internal(["zz"])
    with pytest.raises(DataError, match="0 is padding"):
        m.to_external([0])


def test_internal_ids_start_at_one_and_keep_time_order(tiny_dataset):
    inter = tiny_dataset.interactions
    assert inter[C.UID].min() == 1 and inter[C.IID].min() == 1
    assert tiny_dataset.n_users == 3 and tiny_dataset.n_items == 6
    # ids follow first appearance in time: 'x' at t=10 by 'a' is the first interaction
    assert tiny_dataset.item_map.to_internal(["x"]).tolist() == [1]
    assert tiny_dataset.user_map.to_internal(["a", "c", "b"]).tolist() == [1, 2, 3]
    # tie at t=20 for user a: file order y then z is kept
    a = inter[inter[C.USER] == "a"][C.ITEM].tolist()
    assert a == ["x", "y", "z", "w", "v"]


def test_items_table_restricted_and_aligned(tiny_interactions):
    items = pd.DataFrame({"item_id": ["x", "y", "q"], "title": ["X", "Y", "never seen"]})
    ds = Dataset.from_frames(tiny_interactions, items=items)
    assert ds.items["item_id"].tolist() == ["x", "y"]
    assert ds.items[C.IID].tolist() == ds.item_map.to_internal(["x", "y"]).tolist()


def test_missing_column_is_named(tiny_interactions):
    with pytest.raises(DataError, match=r"missing column\(s\) \['item_id'\]"):
        Dataset.from_frames(tiny_interactions.drop(columns=["item_id"]))


def test_nan_ids_are_reported(tiny_interactions):
    bad = tiny_interactions.copy()
    bad.loc[3, "user_id"] = np.nan
    with pytest.raises(DataError, match=r"'user_id' has 1 NaN"):
        Dataset.from_frames(bad)


def test_empty_interactions():
    with pytest.raises(DataError, match="empty"):
        Dataset.from_frames(pd.DataFrame({"user_id": [], "item_id": []}))


def test_padded_sequences_left_pads_and_truncates(tiny_dataset):
    m = padded_sequences(tiny_dataset.interactions, tiny_dataset.n_users, 4)
    assert m.shape == (4, 4)
    assert (m[0] == 0).all()
    iid = tiny_dataset.item_map.to_internal
    assert m[1].tolist() == iid(["y", "z", "w", "v"]).tolist()  # user a: last 4 of 5
    assert m[2].tolist() == [0] + iid(["z", "x", "v"]).tolist()  # user c: 3 items, left padded
