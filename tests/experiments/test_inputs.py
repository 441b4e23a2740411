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
