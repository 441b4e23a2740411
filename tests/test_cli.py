import json

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
