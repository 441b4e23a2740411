"""Exported models (issue 18): the export scores exactly as the run's best checkpoint, loads without training,
transfer or profile code, and refuses damaged folders and click-prediction runs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import llmkt
from llmkt.errors import DataError
from llmkt.experiments.evaluate import load_run
from llmkt.experiments.export import export_run
from llmkt.experiments.runner import scorer_for
from llmkt.serving.exported import load_exported
from tests.serving.conftest import MODELS


@pytest.mark.parametrize("key", list(MODELS))
def test_export_scores_equal_the_best_checkpoint(tiny_runs, tiny_exports, key):
    cfg, ds, split, model = load_run(tiny_runs[key])
    exp = load_exported(tiny_exports[key])
    ref = model.state_dict()
    got = exp.model.state_dict()
    assert set(got) == set(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    uids = np.unique(split.test["uid"].to_numpy())
    with torch.no_grad():
        expected = scorer_for(model, split, "test")(uids)  # what the run's test pass ranks with
    actual = exp.scores(uids, [exp.history(u) for u in uids])
    assert actual.shape == (len(uids), ds.n_items + 1)
    assert torch.equal(actual[:, 1:], expected[:, 1:])
    assert exp.user_ids == ds.user_map.external_ids.tolist() and exp.item_ids == ds.item_map.external_ids.tolist()


def test_recommend_ranks_unseen_items_by_score(tiny_runs, tiny_exports):
    cfg, ds, split, model = load_run(tiny_runs["sasrec"])
    exp = load_exported(tiny_exports["sasrec"])
    user = ds.user_map.external_ids[4]
    uid = exp.user_index(user)
    seen = set(split.history("test").query("uid == @uid")["item_id"])
    recs = exp.recommend([user], k=5)
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert recs["rank"].tolist() == [1, 2, 3, 4, 5] and not seen & set(recs["item_id"])
    with torch.no_grad():
        scores = scorer_for(model, split, "test")(np.array([uid]))[0]
    order = [i for i in torch.argsort(scores[1:], descending=True).tolist() if ds.item_map.external_ids[i] not in seen]
    assert recs["item_id"].tolist() == [ds.item_map.external_ids[i] for i in order[:5]]
    assert np.allclose(recs["score"], [float(scores[i + 1]) for i in order[:5]])
    with_seen = exp.recommend([user], k=40, exclude_seen=False)
    assert len(with_seen) == 40 and seen <= set(with_seen["item_id"])
    # a posted history scores like the stored one (SASRec reads only the sequence)
    hist = ds.item_map.to_external(exp.history(uid))
    assert exp.recommend_history(hist, k=5)["item_id"].tolist() == recs["item_id"].tolist()


def test_bad_requests_are_refused_with_names(tiny_exports):
    exp = load_exported(tiny_exports["sasrec"])
    with pytest.raises(DataError, match=r"unknown user id\(s\), e.g. \['nobody'\]"):
        exp.recommend(["nobody"])
    with pytest.raises(DataError, match=r"unknown item id\(s\) \['i999'\]"):
        exp.recommend_history(["i1", "i999"])
    with pytest.raises(DataError, match="k must be an integer between 1 and 40"):
        exp.recommend([exp.user_ids[0]], k=0)
    with pytest.raises(DataError, match="scores known users only"):
        load_exported(tiny_exports["bprmf"]).recommend_history(["i1"])


def test_loading_an_export_imports_no_training_transfer_or_profile_code(tiny_exports):
    code = (
        "import json, sys, llmkt\n"
        f"m = llmkt.load_exported({str(tiny_exports['sasrec'])!r})\n"
        "m.recommend([m.user_ids[0]], k=3)\n"
        "print(json.dumps(sorted(n for n in sys.modules if n.startswith('llmkt'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert "llmkt.serving.exported" in loaded and "llmkt.models.sasrec" in loaded
    forbidden = ("llmkt.training", "llmkt.transfer", "llmkt.profiles", "llmkt.experiments", "llmkt.config",
                 "llmkt.evaluation", "llmkt.baselines")
    assert [n for n in loaded if n.startswith(forbidden)] == []


def test_export_files_and_metadata(tiny_runs, tiny_exports):
    folder = tiny_exports["lightgcn"]
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["graph.safetensors", "history.safetensors", "ids.json", "items.csv", "metadata.json",
                     "model.json", "model.safetensors"]
    meta = json.loads((folder / "metadata.json").read_text())
    results = json.loads((tiny_runs["lightgcn"] / "results.json").read_text())
    assert meta["metrics_at_training"]["test"] == results["test"] and meta["history"] == "test"
    assert meta["model"] == "lightgcn" and meta["trained_with_transfer"] is False
    assert set(meta["files"]) == set(names) - {"metadata.json"}
    spec = json.loads((folder / "model.json").read_text())
    assert spec["params"]["dim"] == 8 and spec["params"]["n_layers"] == 2 and spec["n_items"] == 40
    assert spec["kind"] == "pairs" and spec["n_users"] == 30


def test_a_changed_or_missing_file_is_refused(tiny_exports, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_exports["sasrec"], tmp_path / "copy")
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"model.safetensors differs from the file that was exported"):
        load_exported(folder)
    (folder / "metadata.json").unlink()
    with pytest.raises(DataError, match=r"metadata.json is missing"):
        load_exported(folder)
    with pytest.raises(DataError, match="is not a folder"):
        load_exported(tmp_path / "nowhere")


def test_export_refuses_a_non_empty_folder_and_a_click_model(tiny_runs, tiny_exports, tmp_path):
    with pytest.raises(DataError, match="exists and is not empty"):
        export_run(tiny_runs["sasrec"], tiny_exports["sasrec"])
    from tests.test_bad_inputs import write_csv_data

    data = write_csv_data(tmp_path / "data")
    cfg = {"data": {"name": "csv", "path": str(data)}, "model": {"name": "deepfm", "embed_dim": 4, "hidden": [8]},
           "training": {"epochs": 1, "batch_size": 64, "progress": False, "device": "cpu"},
           "output": {"dir": str(tmp_path / "runs"), "name": "ctr"}}
    run = llmkt.train(cfg).run_dir
    with pytest.raises(DataError, match="click-prediction model"):
        export_run(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_overwrite_leaves_no_file_of_the_old_export(tiny_runs, tiny_exports, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_exports["lightgcn"], tmp_path / "reused")
    export_run(tiny_runs["sasrec"], folder, overwrite=True)
    names = sorted(p.name for p in folder.iterdir())
    assert "graph.safetensors" not in names and not any(n.endswith(".tmp") for n in names)
    exp = load_exported(folder)
    assert exp.spec["model"] == "sasrec" and set(exp.metadata["files"]) == set(names) - {"metadata.json"}
