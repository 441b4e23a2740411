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
    assert out.exit_code == 2 and "best.pt" in out.output


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
