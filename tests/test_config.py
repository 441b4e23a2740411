import pytest

from llmkt.config import apply_overrides, load_config, validate_config
from llmkt.errors import ConfigError


def test_defaults_are_valid():
    cfg = validate_config({})
    assert cfg.model.name == "sasrec" and cfg.split.kind == "leave_one_out" and cfg.training.monitor == "NDCG@10"


def test_unknown_key_names_key_and_valid_keys():
    with pytest.raises(ConfigError) as e:
        validate_config({"model": {"name": "sasrec", "hiden": 32}})
    msg = str(e.value)
    assert "model.hiden: unknown key" in msg and "'hidden'" in msg and "'n_blocks'" in msg


def test_unknown_top_level_section():
    with pytest.raises(ConfigError, match=r"trainng: unknown key; valid keys here: \['data', 'evaluation'"):
        validate_config({"trainng": {"epochs": 1}})


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match=r"training\.epochs: .*integer.*'many'"):
        validate_config({"training": {"epochs": "many"}})


def test_unknown_model_and_split_names():
    with pytest.raises(ConfigError, match="'sasrec', 'bert4rec'"):
        validate_config({"model": {"name": "gru4rec"}})
    with pytest.raises(ConfigError, match="split.ratios: unknown key"):
        validate_config({"split": {"kind": "ratio", "ratios": [0.7, 0.1, 0.2]}})


def test_bad_monitor_metric():
    with pytest.raises(ConfigError, match="training.monitor"):
        validate_config({"training": {"monitor": "ndcg"}})


def test_overrides_parse_yaml_values_without_eval(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("model:\n  name: bert4rec\ntraining:\n  epochs: 3\n")
    cfg = load_config(p, ["training.epochs=7", "evaluation.ks=[5, 10]", "model.mask_prob=0.3",
                          "output.name=__import__('os')"])
    assert cfg.training.epochs == 7 and cfg.evaluation.ks == [5, 10] and cfg.model.mask_prob == 0.3
    assert cfg.output.name == "__import__('os')"  # a string, never evaluated
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        apply_overrides({}, ["training.epochs"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"training": 3}, ["training.epochs=2"])


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/x.yaml")
