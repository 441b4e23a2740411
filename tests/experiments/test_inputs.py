"""Vectors read once per process and source: a changed file is read again."""

import os

import numpy as np

from llmkt.config import VectorsConfig
from llmkt.data import ProfileVectors
from llmkt.experiments import inputs


def test_a_source_is_cached_until_its_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "v.npz"
    ProfileVectors(np.array([1, 2]), np.ones((2, 3)), {}).save(path)
    calls = []
    real = inputs._read_source
    monkeypatch.setattr(inputs, "_read_source", lambda *a: calls.append(1) or real(*a))
    v = VectorsConfig(path=str(path))
    a = inputs.read_vectors(v)
    b = inputs.read_vectors(v.model_copy(update={"control": "shuffle"}))  # a control of the same source: cached
    assert len(calls) == 1 and np.array_equal(a.vectors, np.ones((2, 3))) and b.meta["control"] == "shuffle"
    ProfileVectors(np.array([1, 2]), np.zeros((2, 3)), {}).save(path)
    os.utime(path, ns=(1, 1))  # a new modification time, whatever the clock's resolution
    c = inputs.read_vectors(v)
    assert len(calls) == 2 and np.array_equal(c.vectors, np.zeros((2, 3)))


def test_min_coverage_refuses_vectors_of_an_unfinished_profile_job(tmp_path):
    import pandas as pd
    import pytest

    from llmkt.data import Dataset
    from llmkt.data.splits import leave_one_out
    from llmkt.errors import DataError

    inter = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4], "item_id": [1, 2, 3] * 4,
                          "timestamp": range(12)})
    split = leave_one_out(Dataset.from_frames(inter, name="tiny"))
    path = tmp_path / "v.npz"
    ProfileVectors(np.array([1, 2, 3]), np.ones((3, 2)), {"dataset": "tiny"}).save(path)  # user 4 has none yet
    assert inputs.read_vectors(VectorsConfig(path=str(path), min_coverage=0.75), split).vectors.shape == (3, 2)
    with pytest.raises(DataError, match=r"3 of the 4 users of tiny \(75.0%\) have a vector, below "
                                         r"transfer.vectors.min_coverage = 1"):
        inputs.read_vectors(VectorsConfig(path=str(path), min_coverage=1.0), split)
    items = tmp_path / "items.npz"
    ProfileVectors(np.array([1, 2]), np.ones((2, 2)), {"dataset": "tiny", "entity": "item"}).save(items)
    with pytest.raises(DataError, match=r"2 of the 3 items of tiny"):
        inputs.read_vectors(VectorsConfig(path=str(items), min_coverage=1.0), split)
