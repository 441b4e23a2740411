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


def _parts(tiny_dataset):
    # a: x y z | w | v ; b: x y | w | u ; c: z | x | v  (train | valid | test, in time order)
    rows = {"train": [("a", "x", 10), ("a", "y", 20), ("a", "z", 20), ("b", "x", 15), ("b", "y", 25), ("c", "z", 12)],
            "valid": [("a", "w", 30), ("b", "w", 35), ("c", "x", 22)],
            "test": [("a", "v", 40), ("b", "u", 45), ("c", "v", 32)]}
    return {k: pd.DataFrame(v, columns=["user_id", "item_id", "timestamp"]) for k, v in rows.items()}


def test_given_split_matches_rows_and_records_what_it_did(tiny_dataset):
    from llmkt.data import given_split

    s = given_split(tiny_dataset, _parts(tiny_dataset), {"train": "tr.csv"})
    assert (len(s.train), len(s.valid), len(s.test)) == (6, 3, 3)
    assert s.kind == "given" and s.params["files"]["train"] == "tr.csv" and s.params["ordered_by"] == "timestamp"
    assert sorted(s.test["item_id"]) == ["u", "v", "v"]
    assert s.cutoffs.set_index("user_id").loc["a", "cutoff_timestamp"] == 20
    no_time = {k: v.drop(columns="timestamp") for k, v in _parts(tiny_dataset).items()}
    assert given_split(tiny_dataset, no_time).params["ordered_by"] == "file order"


@pytest.mark.parametrize("edit, match", [
    (lambda p: p.__setitem__("train", pd.concat([p["train"], p["test"].iloc[2:]])),
     r"the parts overlap: \(user 'c', item 'v'\) is in train and test"),
    (lambda p: p["valid"].__setitem__("user_id", ["a", "b", "zz"]), r"valid line 4: user_id 'zz' is not in the data"),
    (lambda p: p["test"].__setitem__("item_id", ["v", "u", "nope"]), r"test line 4: item_id 'nope' is not in"),
])
def test_given_split_errors_name_the_row(tiny_dataset, edit, match):
    from llmkt.data import given_split

    parts = _parts(tiny_dataset)
    edit(parts)
    with pytest.raises(DataError, match=match):
        given_split(tiny_dataset, parts, {"train": "train", "valid": "valid", "test": "test"})


def test_given_split_refuses_training_on_the_future(tiny_dataset):
    from llmkt.data import given_split

    parts = _parts(tiny_dataset)
    # user a: 'v' (time 40) to train, 'w' (30) stays in valid: a valid row before the last training one
    parts["train"] = pd.concat([parts["train"], pd.DataFrame([("a", "v", 40)], columns=parts["train"].columns)])
    parts["test"] = parts["test"].iloc[1:]
    with pytest.raises(DataError, match=r"user 'a' has a valid interaction \(item 'w', time 30\) before their last"):
        given_split(tiny_dataset, parts)


def test_given_split_from_files_through_a_run(tmp_path, tiny_interactions):
    import llmkt

    data = tmp_path / "d"
    data.mkdir()
    tiny_interactions.to_csv(data / "interactions.csv", index=False)
    from llmkt.data import Dataset

    for name, part in _parts(Dataset.from_frames(tiny_interactions)).items():
        part.to_csv(data / f"{name}.tsv", sep="\t", index=False)
    cfg = {"data": {"name": "csv", "path": str(data)},
           "split": {"kind": "given", **{n: str(data / f"{n}.tsv") for n in ("train", "valid", "test")}},
           "model": {"name": "bprmf", "dim": 4}, "training": {"epochs": 1, "progress": False, "device": "cpu"},
           "output": {"dir": str(tmp_path / "runs"), "name": "g"}}
    res = llmkt.train(cfg)
    assert res.split.kind == "given" and len(res.split.test) == 3 and len(res.split.params["sha256"]) == 3
    assert "kind: given" in (res.run_dir / "config.yaml").read_text()
    from llmkt.experiments.inputs import load_dataset, split_dataset
    from llmkt.config import validate_config

    c = validate_config(cfg)
    split = split_dataset(c, load_dataset(c))
    res2 = llmkt.train(cfg, ["output.name=obj"], split=split)
    text = (res2.run_dir / "config.yaml").read_text()
    assert text.startswith("# split given in Python") and '"kind": "given"' in text
    assert res2.valid.metrics == res.valid.metrics  # the same split, the same seed, the same result
