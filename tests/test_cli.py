import json

import pytest

from click.testing import CliRunner

from llmkt.cli import main


def test_datasets_lists_presence(tmp_path):
    (tmp_path / "ml-100k").mkdir()
    out = CliRunner().invoke(main, ["datasets", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0
    lines = {l.split()[0]: l.split()[1] for l in out.output.splitlines()[1:]}
    assert lines["ml-100k"] == "found" and lines["ml-1m"] == "missing" and "amazon-beauty" in lines


def test_config_schema_lists_sections():
    out = CliRunner().invoke(main, ["config-schema"])
    assert out.exit_code == 0
    schema = json.loads(out.output)
    assert set(schema["properties"]) == {"data", "split", "model", "training", "evaluation", "output",
                                            "transfer"}


def test_train_rejects_bad_config_before_work(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  name: sasrec\n  hidden: sixty-four\n")
    out = CliRunner().invoke(main, ["train", str(cfg)])
    assert out.exit_code == 2
    assert "model.hidden" in out.output and "sixty-four" in out.output


def test_evaluate_missing_checkpoint(tmp_path):
    out = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert out.exit_code == 2 and "is not a run folder: it has no config.yaml" in out.output
    (tmp_path / "config.yaml").write_text("output:\n  save_checkpoints: false\n")
    out = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert out.exit_code == 2 and "save_checkpoints=false, so it has no best.pt" in out.output
    (tmp_path / "config.yaml").write_text("training:\n  epochs: 3\n")
    (tmp_path / "last.pt").write_bytes(b"x")
    out = CliRunner().invoke(main, ["evaluate", str(tmp_path)])
    assert out.exit_code == 2 and "no finished run here" in out.output and "llmkt train --resume" in out.output


@pytest.mark.parametrize("model, default, shape_line", [
    ("sasrec", "blocks.1", ("blocks.1", "(2, 50, 64)")),
    ("multvae", "mu", ("mu", "(2, 200)")),
    ("neumf", "mlp.1", ("mlp.1", "(2, 5, 16)")),
    ("simplex", "fuse", ("fuse", "(2, 64)")),
    ("deepfm", "dnn.1", ("dnn.1", "(2, 64)")),
])
def test_inspect_model_lists_layers_shapes_and_the_default(model, default, shape_line):
    over = ["--set", f"model={{name: {model}}}"] + (["--set", "model.max_len=50"] if model == "sasrec" else [])
    out = CliRunner().invoke(main, ["inspect-model", *over])
    assert out.exit_code == 0, out.output
    assert f"default transfer layer: {default}" in out.output
    line = next(ln for ln in out.output.splitlines() if ln.split() and ln.split()[0] == shape_line[0])
    assert shape_line[1] in line


def test_config_schema_covers_every_config_kind():
    run = json.loads(CliRunner().invoke(main, ["config-schema", "run"]).output)
    prof = CliRunner().invoke(main, ["config-schema", "profiles"])
    assert prof.exit_code == 0 and "transfer" in run["properties"]
    assert {"backend", "prompt", "store", "embedding"} <= set(json.loads(prof.output)["properties"])
    assert "grid" in json.loads(CliRunner().invoke(main, ["config-schema", "study"]).output)["properties"]


def test_config_errors_point_to_the_schema_of_their_kind():
    from llmkt.errors import ConfigError
    from llmkt.config.profiles import load_profiles_config

    with pytest.raises(ConfigError, match=r"`llmkt config-schema profiles`"):
        load_profiles_config({"backend": {"kind": "template", "model": "x"}})


def test_no_argument_starts_no_long_job(tmp_path, monkeypatch):
    import llmkt.experiments.runner as runner
    import llmkt.experiments.profiles as generate

    monkeypatch.setattr(runner, "train", lambda *a, **k: pytest.fail("a job started"))
    monkeypatch.setattr(generate, "generate_profiles", lambda *a, **k: pytest.fail("a job started"))
    out = CliRunner().invoke(main, ["train"])
    assert out.exit_code == 2 and "needs a CONFIG file" in out.output
    out = CliRunner().invoke(main, ["profiles", "generate"])
    assert out.exit_code == 2 and "Missing argument 'CONFIG'" in out.output


def test_the_offline_hint_names_an_option_that_exists(tmp_path, monkeypatch):
    import urllib.request

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    out = CliRunner().invoke(main, ["train", "--defaults", "--data-dir", str(tmp_path)])
    assert out.exit_code == 2 and "`llmkt train --download`" in out.output and "data.download" in out.output
    out = CliRunner().invoke(main, ["train", "--defaults", "--data-dir", str(tmp_path), "--download"])
    assert out.exit_code == 2 and "could not download https://files.grouplens.org" in out.output
    assert "network unreachable" in out.output


def test_switching_the_model_type_by_one_override(tmp_path):
    from llmkt.config import load_config

    cfg = load_config("configs/sasrec_ml100k.yaml", ["model.name=multvae", "model.latent=32"])
    assert cfg.model.name == "multvae" and cfg.model.latent == 32
