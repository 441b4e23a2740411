"""Bad input through the CLI: exit code 2, one ``error:`` line naming the culprit, no traceback, no run folder
left behind, and no code from a file ever runs (issue 14, points 1 and 4).

Each case builds its bad input in a fresh folder and returns the command line; the table says what the error line
must name. Files that would run code when unpickled (``Payload``) write a marker file: the marker must not exist.
"""

from __future__ import annotations

import gzip
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from llmkt.cli import main
from tests.conftest import random_interactions


class Payload:
    """Unpickling this object runs ``exec``: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


def test_the_payload_is_live(tmp_path):
    """The control: unpickled without protection, the payload does write its marker (so the refusals below
    mean something)."""
    marker = tmp_path / "m"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.read_text() == "code ran"


# -- building blocks -------------------------------------------------------------------------------------------------
def write_csv_data(folder: Path, n_users: int = 30) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    inter = random_interactions(n_users=n_users, n_items=40, per_user=12, seed=0)
    inter.to_csv(folder / "interactions.csv", index=False)
    items = pd.DataFrame({"item_id": sorted(inter["item_id"].unique()), "title": "A film"})
    items.to_csv(folder / "items.csv", index=False)
    return folder


def run_config(tmp: Path, data: Path, **extra) -> Path:
    cfg = {"data": {"name": "csv", "path": str(data)},
           "model": {"name": "sasrec", "max_len": 10, "hidden": 16, "n_blocks": 1, "n_heads": 1},
           "training": {"epochs": 20, "batch_size": 16, "progress": False, "device": "cpu"},
           "output": {"dir": str(tmp / "runs")}}
    for section, values in extra.items():
        cfg[section] = {**cfg.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def user_vectors(data: Path, dim: int = 24, **meta) -> tuple[np.ndarray, np.ndarray]:
    users = np.asarray(pd.read_csv(data / "interactions.csv")["user_id"].unique(), dtype=str)
    return users, np.random.default_rng(0).normal(size=(len(users), dim)).astype(np.float32)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 2-epoch run folder on tiny data (config.yaml, best.pt, last.pt)."""
    import llmkt

    tmp = tmp_path_factory.mktemp("finished")
    data = write_csv_data(tmp / "data")
    res = llmkt.train(run_config(tmp, data), ["training.epochs=2", "output.name=done"])
    return res.run_dir


def clone_run(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            (dst / f.name).write_bytes(f.read_bytes())
    return dst


# -- the cases: (id, build(tmp, finished) -> argv, substrings the error line must contain) ----------------------------
def case_empty_last_pt(tmp, run):
    d = clone_run(run, tmp / "r")
    (d / "last.pt").write_bytes(b"")
    return ["train", "--resume", str(d)]


def case_truncated_last_pt(tmp, run):
    d = clone_run(run, tmp / "r")
    raw = (run / "last.pt").read_bytes()
    (d / "last.pt").write_bytes(raw[: len(raw) // 2])
    return ["train", "--resume", str(d)]


def case_payload_last_pt(tmp, run):
    d = clone_run(run, tmp / "r")
    state = torch.load(run / "last.pt", weights_only=True)
    state["history"] = [Payload(tmp / "MARKER")]
    torch.save(state, d / "last.pt")
    return ["train", "--resume", str(d)]


def case_payload_best_pt(tmp, run):
    d = clone_run(run, tmp / "r")
    torch.save({"weights": Payload(tmp / "MARKER")}, d / "best.pt")
    return ["evaluate", str(d)]


def case_truncated_best_pt(tmp, run):
    d = clone_run(run, tmp / "r")
    (d / "best.pt").write_bytes((run / "best.pt").read_bytes()[:100])
    return ["evaluate", str(d)]


def case_evaluate_unfinished(tmp, run):
    d = tmp / "r"
    d.mkdir()
    (d / "config.yaml").write_text((run / "config.yaml").read_text())
    return ["evaluate", str(d)]


def case_evaluate_not_a_run(tmp, run):
    (tmp / "empty").mkdir()
    return ["evaluate", str(tmp / "empty")]


def case_reducer_payload(tmp, run):
    data = write_csv_data(tmp / "data")
    users, vecs = user_vectors(data)
    from llmkt.data.vectors import ProfileVectors

    path = ProfileVectors(users, vecs, {}).save(tmp / "v.npz")
    (tmp / "reducer.pkl").write_bytes(pickle.dumps(Payload(tmp / "MARKER")))
    cfg = run_config(tmp, data, transfer={"vectors": {"path": str(path)},
                                          "reducer": {"method": "pca", "load": str(tmp / "reducer.pkl")}})
    return ["train", str(cfg)]


def case_umap_pickle_reducer(tmp, run):
    """A version-1 reducer.npz that names a UMAP pickle beside it: refused, the pickle never read."""
    import json

    data = write_csv_data(tmp / "data")
    users, vecs = user_vectors(data)
    from llmkt.data.vectors import ProfileVectors

    path = ProfileVectors(users, vecs, {}).save(tmp / "v.npz")
    (tmp / "reducer.umap.pkl").write_bytes(pickle.dumps(Payload(tmp / "MARKER")))
    meta = {"format": "llmkt-reducer", "version": 1, "method": "umap", "dim": 16, "seed": 0, "umap_params": {},
            "fitted_on": 30, "umap_pickle": {"file": "reducer.umap.pkl", "sha256": "0" * 64}}
    np.savez(tmp / "reducer.npz", meta=np.array(json.dumps(meta)))
    cfg = run_config(tmp, data, transfer={"vectors": {"path": str(path)},
                                          "reducer": {"method": "umap", "load": str(tmp / "reducer.npz")}})
    return ["train", str(cfg)]


def case_output_name_escapes(tmp, run):
    data = write_csv_data(tmp / "data")
    return ["train", str(run_config(tmp, data)), "--set", "output.name=../../escaped"]


def case_output_dir_escapes(tmp, run):
    data = write_csv_data(tmp / "data")
    return ["train", str(run_config(tmp, data)), "--set", "output.dir=runs/../../escaped"]


def _transfer_with_vectors_file(tmp, make) -> list[str]:
    data = write_csv_data(tmp / "data")
    path = make(tmp, data)
    cfg = run_config(tmp, data, transfer={"vectors": {"path": str(path)}, "reducer": {"method": "pca"}})
    return ["train", str(cfg)]


def case_parquet_without_pyarrow(tmp, run):
    def make(tmp, data):
        (tmp / "v.parquet").write_bytes(b"PAR1")
        return tmp / "v.parquet"

    return _transfer_with_vectors_file(tmp, make)


case_parquet_without_pyarrow.hide_pyarrow = True  # as on a machine without the parquet extra


def case_nan_vectors(tmp, run):
    def make(tmp, data):
        users, vecs = user_vectors(data)
        vecs[3, 2] = np.nan
        df = pd.DataFrame(vecs, columns=[f"d{i}" for i in range(vecs.shape[1])])
        df.insert(0, "user_id", users)
        df.to_csv(tmp / "v.csv", index=False)
        return tmp / "v.csv"

    return _transfer_with_vectors_file(tmp, make)


def case_duplicate_vectors(tmp, run):
    def make(tmp, data):
        users, vecs = user_vectors(data)
        users = users.copy()
        users[5] = users[2]
        np.savez(tmp / "v.npz", user_ids=users, vectors=vecs)
        return tmp / "v.npz"

    return _transfer_with_vectors_file(tmp, make)


def case_pickled_vectors(tmp, run):
    def make(tmp, data):
        np.save(tmp / "ids.npy", np.array([Payload(tmp / "MARKER")], dtype=object), allow_pickle=True)
        np.save(tmp / "m.npy", np.zeros((1, 4)))
        return tmp / "m.npy"

    argv = _transfer_with_vectors_file(tmp, make)
    cfg = yaml.safe_load(Path(argv[1]).read_text())
    cfg["transfer"]["vectors"]["ids"] = str(tmp / "ids.npy")
    Path(argv[1]).write_text(yaml.safe_dump(cfg))
    return argv


def case_vectors_of_another_dataset(tmp, run):
    def make(tmp, data):
        from llmkt.data.vectors import ProfileVectors

        users, vecs = user_vectors(data)
        return ProfileVectors(users, vecs, {"dataset": "ml-100k"}).save(tmp / "v.npz")

    return _transfer_with_vectors_file(tmp, make)


def case_wrong_layer(tmp, run):
    data = write_csv_data(tmp / "data")
    from llmkt.data.vectors import ProfileVectors

    users, vecs = user_vectors(data)
    path = ProfileVectors(users, vecs, {}).save(tmp / "v.npz")
    cfg = run_config(tmp, data, transfer={"vectors": {"path": str(path)}, "reducer": {"method": "pca"},
                                          "layer": "blocks.7"})
    return ["train", str(cfg)]


def case_reducer_too_wide(tmp, run):
    data = write_csv_data(tmp / "data")
    from llmkt.data.vectors import ProfileVectors

    users, vecs = user_vectors(data, dim=8)  # 8 input dims cannot give the 16-wide layer
    path = ProfileVectors(users, vecs, {}).save(tmp / "v.npz")
    cfg = run_config(tmp, data, transfer={"vectors": {"path": str(path)}, "reducer": {"method": "pca"}})
    return ["train", str(cfg)]


def case_missing_vectors_file(tmp, run):
    data = write_csv_data(tmp / "data")
    cfg = run_config(tmp, data, transfer={"vectors": {"path": str(tmp / "nope.npz")}, "reducer": {"method": "pca"}})
    return ["train", str(cfg)]


def _csv_case(tmp, edit) -> list[str]:
    data = write_csv_data(tmp / "data")
    edit(data)
    return ["train", str(run_config(tmp, data))]


def case_csv_without_item_id(tmp, run):
    def edit(data):
        df = pd.read_csv(data / "interactions.csv").rename(columns={"item_id": "movie"})
        df.to_csv(data / "interactions.csv", index=False)

    return _csv_case(tmp, edit)


def case_csv_non_numeric_rating(tmp, run):
    def edit(data):
        df = pd.read_csv(data / "interactions.csv")
        df["rating"] = df["rating"].astype(str)
        df.loc[7, "rating"] = "five"
        df.to_csv(data / "interactions.csv", index=False)

    return _csv_case(tmp, edit)


def case_csv_non_numeric_rating_with_min_rating(tmp, run):
    argv = case_csv_non_numeric_rating(tmp, run)
    return argv + ["--set", "data.min_rating=4"]


def case_csv_empty(tmp, run):
    return _csv_case(tmp, lambda data: (data / "interactions.csv").write_text(""))


def case_csv_header_only(tmp, run):
    argv = _csv_case(tmp, lambda data: (data / "interactions.csv").write_text("user_id,item_id,rating,timestamp\n"))
    return argv + ["--set", "data.min_rating=4"]


def case_csv_bad_timestamp(tmp, run):
    def edit(data):
        df = pd.read_csv(data / "interactions.csv")
        df["timestamp"] = df["timestamp"].astype(str)
        df.loc[3, "timestamp"] = "yesterday"
        df.to_csv(data / "interactions.csv", index=False)

    return _csv_case(tmp, edit)


def case_items_mixed_encodings(tmp, run):
    def edit(data):
        lines = (data / "items.csv").read_bytes().splitlines()
        lines[2] = lines[2].split(b",")[0] + ",Caf\xe9 Society".encode("latin-1")
        lines[3] = lines[3].split(b",")[0] + ",Amélie".encode("utf-8")
        (data / "items.csv").write_bytes(b"\n".join(lines) + b"\n")

    return _csv_case(tmp, edit)


def case_truncated_u_data(tmp, run):
    home = tmp / "home" / "ml-100k"
    home.mkdir(parents=True)
    (home / "u.data").write_text("1\t10\t4\t881250949\n2\t10\t3\t881250950\n3\t1")
    (home / "u.item").write_text("10|Film (1995)|01-Jan-1995||url|" + "|".join(["0"] * 19) + "\n")
    return ["train", "--defaults", "--data-dir", str(tmp / "home"), "--set", f"output.dir={tmp / 'runs'}"]


def case_truncated_ratings_dat(tmp, run):
    home = tmp / "home" / "ml-1m-half"
    home.mkdir(parents=True)
    with gzip.open(home / "ratings.dat.gz", "wt") as f:
        f.write("1::10::4::978300760\n1::11::5::978300761\n2::1")
    (home / "movies.dat").write_text("10::Film (1995)::Drama\n")
    return ["train", "--defaults", "--data-dir", str(tmp / "home"), "--set", "data.name=ml-1m-half",
            "--set", f"output.dir={tmp / 'runs'}"]


def _profile_job(tmp, data, **extra) -> Path:
    cfg = {"data": {"name": "csv", "path": str(data)}, "backend": {"kind": "template"},
           "store": str(tmp / "store.sqlite"), "progress": False, **extra}
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def case_store_not_sqlite(tmp, run):
    data = write_csv_data(tmp / "data")
    job = _profile_job(tmp, data)
    (tmp / "store.sqlite").write_text("user_id,text\n1,likes films\n" * 50)
    return ["profiles", "stats", str(job)]


def case_store_not_sqlite_generate(tmp, run):
    argv = case_store_not_sqlite(tmp, run)
    return ["profiles", "generate", argv[2]]


def case_train_without_config(tmp, run):
    return ["train"]


def case_config_missing(tmp, run):
    return ["train", str(tmp / "nope.yaml")]


def case_config_not_yaml(tmp, run):
    (tmp / "bad.yaml").write_text("model: [sasrec\n")
    return ["train", str(tmp / "bad.yaml")]


def case_unknown_key(tmp, run):
    data = write_csv_data(tmp / "data")
    return ["train", str(run_config(tmp, data)), "--set", "training.epochz=3"]


def case_resume_not_a_run(tmp, run):
    (tmp / "x").mkdir()
    return ["train", "--resume", str(tmp / "x")]


CASES = [
    # point 1: no code runs from a file
    ("payload last.pt", case_payload_last_pt, ["last.pt", "refused"]),
    ("payload best.pt", case_payload_best_pt, ["best.pt", "refused"]),
    ("pickled reducer", case_reducer_payload, ["reducer.pkl", "not a llmkt reducer file", "unpickling runs code"]),
    ("umap reducer pickled by version 1", case_umap_pickle_reducer, ["reducer.npz", "pickle", "Refit"]),
    ("pickled vector ids", case_pickled_vectors, ["ids.npy"]),
    ("output.name escapes", case_output_name_escapes, ["output.name", "../../escaped"]),
    ("output.dir escapes", case_output_dir_escapes, ["output.dir", "'..'"]),
    # point 4: bad input names the culprit
    ("empty last.pt", case_empty_last_pt, ["last.pt", "empty (0 bytes)"]),
    ("truncated last.pt", case_truncated_last_pt, ["last.pt", "not a readable checkpoint"]),
    ("truncated best.pt", case_truncated_best_pt, ["best.pt", "not a readable checkpoint"]),
    ("evaluate unfinished run", case_evaluate_unfinished, ["no finished run"]),
    ("evaluate a folder that is no run", case_evaluate_not_a_run, ["not a run folder", "config.yaml"]),
    ("resume a folder that is no run", case_resume_not_a_run, ["not a run folder"]),
    ("parquet without pyarrow", case_parquet_without_pyarrow, ["v.parquet", "pyarrow", "llmkt[parquet]"]),
    ("NaN vectors", case_nan_vectors, ["v.csv", "NaN", "user ids 'u3'"]),
    ("duplicate vectors", case_duplicate_vectors, ["v.npz", "more than one vector", "'u2'"]),
    ("vectors of another dataset", case_vectors_of_another_dataset, ["'ml-100k'", "'csv'", "allow_other_dataset"]),
    ("missing vectors file", case_missing_vectors_file, ["nope.npz", "does not exist"]),
    ("wrong layer", case_wrong_layer, ["transfer.layer", "'blocks.7'", "blocks.0"]),
    ("reducer wider than its input", case_reducer_too_wide, ["transfer.reducer", "16 dimensions", "8 input dims"]),
    ("csv without item_id", case_csv_without_item_id, ["interactions.csv", "'item_id'", "movie"]),
    ("csv non-numeric rating", case_csv_non_numeric_rating, ["interactions.csv line 9", "'five'"]),
    ("csv non-numeric rating + min_rating", case_csv_non_numeric_rating_with_min_rating,
     ["interactions.csv line 9", "'five'"]),
    ("csv bad timestamp", case_csv_bad_timestamp, ["interactions.csv line 5", "'yesterday'", "ISO date"]),
    ("empty interactions.csv", case_csv_empty, ["interactions.csv", "empty", "user_id,item_id"]),
    ("header-only interactions.csv", case_csv_header_only, ["interactions.csv", "header but no rows"]),
    ("items.csv mixing encodings", case_items_mixed_encodings, ["items.csv line 3", "not UTF-8"]),
    ("truncated u.data", case_truncated_u_data, ["u.data line 3", "expected 4 fields"]),
    ("truncated ratings.dat", case_truncated_ratings_dat, ["ratings.dat.gz line 3", "expected 4 fields"]),
    ("store that is not SQLite", case_store_not_sqlite, ["store.sqlite", "not a llmkt profile store"]),
    ("generate into a store that is not SQLite", case_store_not_sqlite_generate,
     ["store.sqlite", "not a llmkt profile store"]),
    ("train without a config", case_train_without_config, ["needs a CONFIG", "--defaults"]),
    ("config file missing", case_config_missing, ["nope.yaml", "does not exist"]),
    ("config not YAML", case_config_not_yaml, ["bad.yaml", "not valid YAML"]),
    ("unknown key", case_unknown_key, ["training.epochz: unknown key", "'epochs'"]),
]


@pytest.mark.parametrize("build, needles", [(b, n) for _, b, n in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_error_line_and_exit_2(build, needles, tmp_path, finished_run, monkeypatch):
    if getattr(build, "hide_pyarrow", False):
        import llmkt.data.vectors

        monkeypatch.setattr(llmkt.data.vectors, "_has_pyarrow", lambda: False)
    monkeypatch.setenv("LLMKT_DATA", str(tmp_path / "no-data"))  # a regression that starts a default job fails fast
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path, finished_run)
    before = set(os.listdir(tmp_path))
    res = CliRunner().invoke(main, argv)
    out = res.output
    assert res.exit_code == 2, f"exit {res.exit_code}: {out}\n{res.exception!r}"
    assert "Traceback" not in out and isinstance(res.exception, SystemExit), repr(res.exception)
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    assert not (tmp_path / "MARKER").exists(), "code from a file ran"
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), f"a failed run left {list(runs.iterdir())}"
    assert not (tmp_path.parent / "escaped").exists() and not (tmp_path / "escaped").exists()
    assert set(os.listdir(tmp_path)) - before <= {"runs", "profiles"}


@pytest.mark.realdata
def test_a_bad_input_in_a_real_process_prints_one_line(tmp_path, shared_data):
    """The same through a real process (stderr as a user sees it): one line, no traceback."""
    import subprocess

    d = tmp_path / "r"
    d.mkdir()
    (d / "config.yaml").write_text("data:\n  name: ml-100k\n")
    (d / "last.pt").write_bytes(b"")
    out = subprocess.run([sys.executable, "-m", "llmkt.cli", "train", "--resume", str(d)], capture_output=True,
                         text=True, timeout=120, env={**os.environ, "LLMKT_DATA": str(shared_data)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: resume:") and "last.pt is empty (0 bytes)" in out.stderr
