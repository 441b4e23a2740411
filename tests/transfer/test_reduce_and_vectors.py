import numpy as np
import pandas as pd
import pytest

from llmkt.data import Dataset
from llmkt.errors import ConfigError, DataError
from llmkt.transfer.reduce import Reducer
from llmkt.data.vectors import ProfileVectors


def test_pca_recovers_the_dominant_axis_and_is_deterministic(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    x = np.stack([t * 3, t * 3 + rng.normal(0, 0.01, 200), rng.normal(0, 0.1, 200)], 1)
    r = Reducer("pca", 1).fit(x)
    comp = r.state["components"][0]
    assert np.allclose(np.abs(comp), [1 / np.sqrt(2), 1 / np.sqrt(2), 0], atol=0.01)
    assert r.state["explained_variance_ratio"][0] > 0.99
    assert np.allclose(r.transform(x)[:, 0], (x - x.mean(0)) @ comp, atol=1e-5)
    saved = r.save(tmp_path / "r")
    assert saved == tmp_path / "r.npz" and not list(tmp_path.glob("*.pkl"))  # arrays + JSON, no pickle
    assert np.array_equal(Reducer.load(saved).transform(x), r.transform(x))
    with pytest.raises(ConfigError, match="cannot produce more dimensions"):
        Reducer("pca", 5).fit(x)


def test_umap_is_seeded():
    pytest.importorskip("umap")
    x = np.random.default_rng(0).normal(size=(60, 10))
    a = Reducer("umap", 2, seed=3, umap_params={"n_neighbors": 5}).fit(x).transform(x[:5])
    b = Reducer("umap", 2, seed=3, umap_params={"n_neighbors": 5}).fit(x).transform(x[:5])
    assert a.shape == (5, 2) and np.allclose(a, b)


def test_umap_reducer_is_saved_as_arrays_and_maps_new_rows_by_their_nearest_training_rows(tmp_path):
    pytest.importorskip("umap")
    x = np.random.default_rng(0).normal(size=(60, 10)).astype(np.float32)
    r = Reducer("umap", 2, seed=3, umap_params={"n_neighbors": 5}).fit(x)
    path = r.save(tmp_path / "reducer.npz")
    assert [f.name for f in tmp_path.iterdir()] == ["reducer.npz"]
    with np.load(path, allow_pickle=False) as z:  # plain arrays: readable without pickle
        assert sorted(z.files) == ["embedding", "meta", "train_inputs"]
    back = Reducer.load(path)
    assert (back.method, back.dim, back.fitted_on) == ("umap", 2, 60)
    assert np.array_equal(back.transform(x), r.transform(x))
    assert np.array_equal(r.transform(x), r.state["embedding"])  # a training row -> its own fitted embedding
    # a new row: the inverse-distance-weighted mean of its 5 nearest training rows' embeddings (cosine distance)
    q = x[:1] + np.float32(0.3)
    cos = 1 - (x @ q[0]) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q[0]))
    near = np.argsort(cos)[:5]
    w = 1 / cos[near]
    expected = (w[:, None] * r.state["embedding"][near]).sum(0) / w.sum()
    assert np.allclose(back.transform(q)[0], expected, atol=1e-5)


def test_a_version_1_umap_reducer_that_names_a_pickle_is_refused(tmp_path):
    import json

    meta = {"format": "llmkt-reducer", "version": 1, "method": "umap", "dim": 2, "seed": 0, "umap_params": {},
            "fitted_on": 30, "umap_pickle": {"file": "reducer.umap.pkl", "sha256": "0" * 64}}
    np.savez(tmp_path / "reducer.npz", meta=np.array(json.dumps(meta)))
    with pytest.raises(ConfigError, match="version 1, whose model is a pickle"):
        Reducer.load(tmp_path / "reducer.npz")


def test_vectors_align_to_internal_ids_and_report_coverage(tmp_path):
    ds = Dataset.from_frames(pd.DataFrame({"user_id": [10, 10, 20, 30], "item_id": [1, 2, 1, 2]}))
    pv = ProfileVectors(np.array([30, 10, 99]), np.array([[3.0, 3.0], [1.0, 1.0], [9.0, 9.0]]), {"encoder": "x"})
    mat, mask = pv.aligned(ds)
    assert mask.tolist() == [False, True, False, True]  # uid 1=10, 2=20 (no vector), 3=30; 99 is unknown
    assert mat[1].tolist() == [1.0, 1.0] and mat[3].tolist() == [3.0, 3.0] and mat[2].tolist() == [0.0, 0.0]
    assert pv.coverage(ds) == pytest.approx(2 / 3)
    back = ProfileVectors.load(pv.save(tmp_path / "v.npz"))
    assert back.meta == {"encoder": "x"} and np.array_equal(back.vectors, pv.vectors)
    np.save(tmp_path / "m.npy", pv.vectors)
    (tmp_path / "ids.txt").write_text("30\n10\n99\n")
    from_npy = ProfileVectors.load(tmp_path / "m.npy", tmp_path / "ids.txt")
    assert np.array_equal(from_npy.aligned(ds)[1], mask)  # text ids matched to integer ids
    pd.DataFrame({"user_id": [10, 30], "a": [1.0, 2.0], "b": [0.0, 1.0]}).to_csv(tmp_path / "v.csv", index=False)
    assert ProfileVectors.load(tmp_path / "v.csv").dim == 2


def test_bad_vectors_are_rejected(tmp_path):
    with pytest.raises(DataError, match=r"1 user id\(s\) have more than one vector, e.g. 7; keep one"):
        ProfileVectors(np.array([7, 7, 8]), np.zeros((3, 3)))
    with pytest.raises(DataError, match=r"2 user\(s\) have NaN or infinite values, e.g. user ids 'b', 'c' "
                                        r"\(rows \[1, 2\]\)"):
        ProfileVectors(np.array(["a", "b", "c"]), np.array([[0.0, 1.0], [np.nan, 1.0], [1.0, np.inf]]))
    with pytest.raises(DataError, match="needs the file of user ids"):
        np.save(tmp_path / "m.npy", np.zeros((2, 2)))
        ProfileVectors.load(tmp_path / "m.npy")


def test_controls_keep_shape_and_break_the_user_link():
    rows = np.arange(12, dtype=np.float32).reshape(6, 2)  # row i = [2i, 2i + 1], unique per user
    pv = ProfileVectors(np.array([10, 11, 12, 13, 14, 15]), rows, {"encoder": "e"})
    assert pv.control("none") is pv
    sh = pv.control("shuffle", seed=3)
    assert sh.user_ids.tolist() == pv.user_ids.tolist() and sh.meta == {"encoder": "e", "control": "shuffle",
                                                                         "control_seed": 3}
    # the same rows, but every user holds another user's row (a derangement), and seeded
    assert sorted(map(tuple, sh.vectors.tolist())) == sorted(map(tuple, rows.tolist()))
    assert not (sh.vectors == rows).all(1).any()
    assert np.array_equal(sh.vectors, pv.control("shuffle", seed=3).vectors)
    assert not np.array_equal(sh.vectors, pv.control("shuffle", seed=4).vectors)
    big = ProfileVectors(np.arange(4000), np.random.default_rng(0).normal([1.0, -2.0], [0.5, 3.0], (4000, 2)))
    rnd = big.control("random", seed=0)
    assert rnd.vectors.shape == (4000, 2) and not np.allclose(rnd.vectors, big.vectors)
    assert np.allclose(rnd.vectors.mean(0), [1.0, -2.0], atol=0.15)
    assert np.allclose(rnd.vectors.std(0), [0.5, 3.0], rtol=0.05)
    with pytest.raises(DataError, match="expected 'none', 'shuffle' or 'random'"):
        pv.control("permute")
