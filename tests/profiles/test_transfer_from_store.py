"""transfer.vectors.profiles: a run reads its vectors straight from the profile store, leak-checked."""

import pytest
import yaml

import llmkt
from llmkt.experiments.profiles import embed_profiles
from llmkt.experiments.profiles import generate_profiles
from llmkt.profiles.history import LeakError
from tests.conftest import random_interactions

from .test_embed import LengthEncoder


@pytest.fixture
def job(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    random_interactions(n_users=40, n_items=30, per_user=10).to_csv(folder / "interactions.csv", index=False)
    cfg = {"data": {"name": "csv", "path": str(folder)}, "store": str(tmp_path / "p.sqlite"), "progress": False,
           "backend": {"kind": "template"}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    generate_profiles(str(path))
    embed_profiles(str(path), encoder=LengthEncoder())
    return folder, path


def _run(tmp_path, folder, path, **split):
    return {"data": {"name": "csv", "path": str(folder)}, "split": split or {"kind": "leave_one_out"},
            "model": {"name": "sasrec", "max_len": 10, "hidden": 8, "n_heads": 2},
            "training": {"epochs": 2, "batch_size": 8, "progress": False},
            "output": {"dir": str(tmp_path / "runs")},
            "transfer": {"vectors": {"profiles": str(path), "encoder": "test:length"}, "reducer": {"method": "none"},
                         "alignment": "projection", "compare_base": False,
                         "schedule": [{"step": "transfer", "epochs": 1}, {"step": "finetune", "epochs": 1}]}}


def test_run_reads_vectors_from_the_store(tmp_path, job):
    folder, path = job
    res = llmkt.train(_run(tmp_path, folder, path))
    assert res.transfer["coverage"] == 1.0 and res.transfer["vector_dim_in"] == 3
    assert res.transfer["vectors_meta"]["encoder"] == "test:length"
    assert res.transfer["vectors_meta"]["model"] == "template:v1"


def test_run_on_another_split_refuses_the_profiles(tmp_path, job):
    folder, path = job
    with pytest.raises(LeakError, match="outside the training part of this ratio split"):
        llmkt.train(_run(tmp_path, folder, path, kind="ratio"))


def test_vectors_need_exactly_one_source():
    from llmkt.errors import ConfigError

    with pytest.raises(ConfigError, match="exactly one of path"):
        llmkt.load_config(None, ["transfer.vectors.path=a.npz", "transfer.vectors.profiles=job.yaml"])
