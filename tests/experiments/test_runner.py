"""The main path fails early and cleanly (issue 14, point 6): every check of a transfer run before the base model
trains, vectors of another dataset refused, labelled epoch lines without bar frames, no folder left by a failed
run, a resumable one kept."""

import time

import pytest
from click.testing import CliRunner

import llmkt
from llmkt.cli import main
from llmkt.errors import ConfigError, LLMKTError
from llmkt.training.trainer import Trainer
from llmkt.data.vectors import ProfileVectors
from tests.test_bad_inputs import run_config, user_vectors, write_csv_data


@pytest.fixture
def data(tmp_path):
    return write_csv_data(tmp_path / "data")


def _vectors(tmp_path, data, dim=24, **meta):
    users, vecs = user_vectors(data, dim)
    return ProfileVectors(users, vecs, meta).save(tmp_path / "v.npz")


@pytest.mark.parametrize("transfer, match", [
    ({"layer": "blocks.9"}, "no layer of SASRec matches 'blocks.9'"),
    ({"reducer": {"method": "pca", "dim": 8}}, "alignment 'fixed' needs the layer width 16"),
    ({"schedule": [{"step": "transfer", "fraction": 1.0, "freeze": ["nope.*"]}]}, "'nope.*' matches no parameter"),
    ({"vectors": {"path": "missing.npz"}}, "missing.npz does not exist"),
])
def test_transfer_checks_run_before_the_base_model_trains(tmp_path, data, monkeypatch, transfer, match):
    fits = []
    monkeypatch.setattr(Trainer, "fit", lambda self, *a, **k: fits.append(1) or self)
    t = {"vectors": {"path": str(_vectors(tmp_path, data))}, "reducer": {"method": "pca"}, **transfer}
    cfg = run_config(tmp_path, data, transfer=t)  # 20 epochs
    t0 = time.perf_counter()
    with pytest.raises(LLMKTError, match=match):
        llmkt.train(cfg)
    assert time.perf_counter() - t0 < 10 and fits == []  # no epoch of the base model ran
    assert not (tmp_path / "runs").exists()


def test_vectors_made_for_another_dataset_are_refused_unless_allowed(tmp_path, data):
    path = _vectors(tmp_path, data, dataset="ml-100k")
    cfg = run_config(tmp_path, data, transfer={"vectors": {"path": str(path)}, "reducer": {"method": "pca"},
                                               "compare_base": False},
                     training={"epochs": 1})
    with pytest.raises(ConfigError, match="made for dataset 'ml-100k'.*this run uses 'csv'"):
        llmkt.train(cfg)
    res = llmkt.train(cfg, ["transfer.vectors.allow_other_dataset=true"])
    assert res.transfer["coverage"] == 1.0


def test_low_coverage_warns(tmp_path, data):
    users, vecs = user_vectors(data)
    path = ProfileVectors(users[:5], vecs[:5], {}).save(tmp_path / "few.npz")
    cfg = run_config(tmp_path, data, transfer={"vectors": {"path": str(path)}, "reducer": {"method": "pca",
                                                                                           "dim": 4},
                                               "alignment": "projection", "compare_base": False},
                     training={"epochs": 1})
    out = CliRunner().invoke(main, ["train", str(cfg)])
    assert out.exit_code == 0, out.output
    assert "warning: transfer.vectors: only 16.7% of the 30 users of csv have a vector" in out.output


def test_epoch_lines_name_model_and_phase_and_carry_no_bar_frames(tmp_path, data):
    cfg = run_config(tmp_path, data, transfer={"vectors": {"path": str(_vectors(tmp_path, data))},
                                               "reducer": {"method": "pca"}},
                     training={"epochs": 2, "progress": True})
    out = CliRunner().invoke(main, ["train", str(cfg)])  # output is not a terminal here
    assert out.exit_code == 0, out.output
    lines = [ln for ln in out.output.splitlines() if "epoch " in ln and "/2 {" in ln]
    assert [ln.split(" {")[0] for ln in lines] == [
        "[sasrec base] epoch 1/2", "[sasrec base] epoch 2/2",
        "[sasrec transfer, transfer phase] epoch 1/2", "[sasrec transfer, finetune phase] epoch 2/2"]
    assert "\r" not in out.output and "it/s" not in out.output


def test_a_failed_run_leaves_no_folder_and_a_resumable_one_stays(tmp_path, data):
    from llmkt.training.callbacks import Callback

    class Boom(Callback):
        def __init__(self, at):
            self.at = at

        def on_epoch_end(self, trainer, epoch, logs):
            if epoch == self.at:
                raise RuntimeError("boom")

    cfg = run_config(tmp_path, data, training={"epochs": 3})
    with pytest.raises(RuntimeError, match="boom"):  # before the first checkpoint: nothing to resume
        llmkt.train(cfg, ["output.name=early"], extra_callbacks=[Boom(1)])
    assert not (tmp_path / "runs" / "early").exists()
    with pytest.raises(RuntimeError, match="boom"):  # after epoch 1's last.pt: the folder is kept for --resume
        llmkt.train(cfg, ["output.name=late"], extra_callbacks=[Boom(2)])
    kept = tmp_path / "runs" / "late"
    assert (kept / "last.pt").exists() and not (kept / "results.json").exists()
    out = CliRunner().invoke(main, ["evaluate", str(kept)])
    assert out.exit_code == 2 and "no finished run here" in out.output and f"--resume {kept}" in out.output
    assert CliRunner().invoke(main, ["evaluate", str(kept), "--allow-unfinished"]).exit_code == 0
    res = llmkt.train(kept / "config.yaml", resume_from=kept)
    assert res.best_epoch >= 1 and (kept / "results.json").exists() and len(res.history) == 3
