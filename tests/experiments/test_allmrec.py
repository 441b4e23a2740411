"""A-LLMRec jobs end to end on a tiny CSV dataset with a tiny LLM and a tiny sentence encoder (no download)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import llmkt
from llmkt.errors import ConfigError, DataError
from tests.conftest import random_interactions

pytest.importorskip("transformers")
pytest.importorskip("sentence_transformers")
from tests.baselines.allmrec_helpers import save_tiny_llm, save_tiny_sentence_encoder  # noqa: E402

COLOURS = ("red", "blue", "green", "lip")
KINDS = ("soap", "cream", "gel", "mask", "oil", "brush", "balm", "serum", "toner", "comb")


def _data(folder, titles: bool = True):
    folder.mkdir()
    inter = random_interactions(n_users=30, n_items=40, per_user=10)
    inter[["user_id", "item_id", "timestamp"]].to_csv(folder / "interactions.csv", index=False)
    if titles:
        items = pd.DataFrame({"item_id": [f"i{i}" for i in range(40)],
                              "title": [f"{COLOURS[i // 10]} {KINDS[i % 10]}" for i in range(40)]})
        items.to_csv(folder / "items.csv", index=False)
    return folder


def _run(tmp_path, data, model: dict, name: str):
    cfg = {"data": {"name": "csv", "path": str(data)}, "model": model,
           "training": {"epochs": 2, "batch_size": 16, "progress": False, "seed": 0},
           "output": {"dir": str(tmp_path / "runs"), "name": name}}
    return str(llmkt.train(cfg).run_dir)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("allmrec")
    data = _data(tmp / "data")
    run = _run(tmp, data, {"name": "sasrec", "hidden": 16, "n_blocks": 1, "n_heads": 1, "max_len": 8}, "sasrec")
    return {"tmp": tmp, "data": data, "run": run, "llm": save_tiny_llm(tmp / "llm"),
            "st": save_tiny_sentence_encoder(tmp / "st")}


def _cfg(s, out, **kw):
    cfg = {"name": "tiny", "cf_run": s["run"], "dir": str(out), "progress": False,
           "users": {"eval": 10, "stage": "test"}, "candidates": {"n": 5, "seed": 1},
           "text_encoder": {"model": s["st"], "finetune": True},
           "stage1": {"epochs": 2, "batch_size": 8, "latent": 8},
           "llm": {"model": s["llm"]}, "stage2": {"epochs": 1, "batch_size": 8},
           "prompt": {"n_history": 3, "max_new_tokens": 4}, "evaluation": {"batch_size": 5},
           "generate": {"users": 3, "max_new_tokens": 4}}
    cfg.update(kw)
    return cfg


def test_train_evaluate_generate_and_resume(setup, tmp_path):
    from llmkt.experiments import allmrec

    out = tmp_path / "job"
    r = allmrec.train(_cfg(setup, out))
    assert len(r.stage1) == 2 and len(r.stage2) == 1
    assert r.hashes["cf_model"] == r.hashes["cf_model_after"] and r.hashes["llm"] == r.hashes["llm_after"]
    assert {"stage1.pt", "stage2.pt", "config.yaml", "train_log.jsonl"} <= {p.name for p in out.iterdir()}
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["stage"] for x in log] == [1, 1, 2]
    res = allmrec.evaluate(_cfg(setup, out))
    assert res["n_users"] == 10 and res["n_candidates"] == 5
    assert set(res["models"]) == {"cf:sasrec", "allmrec", "llm_only"}
    for m in res["models"].values():
        assert 0.0 <= m["Hit@1"] <= 1.0 and m["n"] == 10
    per = pd.read_csv(out / "per_user.csv")
    assert len(per) == 10 and per["cf:sasrec"].mean() == pytest.approx(res["models"]["cf:sasrec"]["Hit@1"])
    assert res["slices"]["cold_items"]["n"] + res["slices"]["warm_items"]["n"] == 10
    cands = pd.read_csv(out / "candidates.csv")
    assert len(cands) == 10 and all(len(c.split()) == 5 for c in cands["candidates"])
    # a second evaluation reads the stored candidates and answers: identical results, nothing regenerated
    files = sorted(out.glob("answers_allmrec_*.jsonl"))
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 10
    answers = files[0].read_text()
    again = allmrec.evaluate(_cfg(setup, out))
    assert again["models"] == res["models"]
    assert sorted(out.glob("answers_allmrec_*.jsonl")) == files and files[0].read_text() == answers
    # another prompt is another answers file (answers of one prompt are never reused for another)
    allmrec.evaluate(_cfg(setup, out, prompt={"n_history": 2, "max_new_tokens": 4}))
    assert len(list(out.glob("answers_allmrec_*.jsonl"))) == 2
    assert pd.read_csv(out / "candidates.csv").equals(cands)
    # other settings for the same folder are refused instead of mixing candidate sets
    with pytest.raises(ConfigError, match="drawn with other settings.*seed: stored 1, config 2"):
        allmrec.evaluate(_cfg(setup, out, candidates={"n": 5, "seed": 2}))
    with pytest.raises(ConfigError, match="stage: stored 'test', config 'valid'"):
        allmrec.evaluate(_cfg(setup, out, users={"eval": 10, "stage": "valid"}))
    # a second train returns the stored stages without training again
    r2 = allmrec.train(_cfg(setup, out))
    assert r2.stage1 == r.stage1 and r2.stage2 == r.stage2
    gen = allmrec.generate(_cfg(setup, out))
    assert len(gen) == 3 and set(gen.columns) == {"user_id", "history", "generation"}


def test_bad_inputs_fail_before_training(setup, tmp_path):
    from llmkt.experiments import allmrec

    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(ConfigError, match="without config.json"):
        allmrec.train(_cfg(setup, tmp_path / "a", llm={"model": str(empty)}))
    assert not (tmp_path / "a").exists()  # refused before any training
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="could not load"):
        allmrec.train(_cfg(setup, tmp_path / "b", llm={"model": str(broken)}))
    assert not (tmp_path / "b").exists()  # refused before stage 1
    with pytest.raises(ConfigError, match="does not exist"):
        allmrec.train(_cfg(setup, tmp_path / "c", llm={"model": str(tmp_path / "missing")}))
    no_titles = _run(tmp_path, _data(tmp_path / "plain", titles=False),
                     {"name": "sasrec", "hidden": 16, "n_blocks": 1, "n_heads": 1, "max_len": 8}, "plain")
    with pytest.raises(DataError, match="has no item titles"):
        allmrec.train(_cfg(setup, tmp_path / "d", cf_run=no_titles))
    vae = _run(tmp_path, setup["data"], {"name": "multvae"}, "vae")
    with pytest.raises(ConfigError, match="has no item embeddings"):
        allmrec.train(_cfg(setup, tmp_path / "e", cf_run=vae))
    bpr = _run(tmp_path, setup["data"], {"name": "bprmf", "dim": 8}, "bpr")
    with pytest.raises(ConfigError, match="reads the user representation from the item sequence"):
        allmrec.train(_cfg(setup, tmp_path / "f", cf_run=bpr))
    with pytest.raises(ConfigError, match="stage1.bogus"):
        allmrec.train(_cfg(setup, tmp_path / "g", stage1={"bogus": 1}))


def test_the_cli_mirrors_the_api(setup, tmp_path):
    import yaml
    from click.testing import CliRunner

    from llmkt.cli import main

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_cfg(setup, tmp_path / "job", evaluation={"batch_size": 5, "llm_only": False})))
    runner = CliRunner()
    res = runner.invoke(main, ["allmrec", "train", str(path)])
    assert res.exit_code == 0, res.output
    assert "frozen CF model and LLM unchanged" in res.output
    res = runner.invoke(main, ["allmrec", "evaluate", str(path), "--set", "users.eval=6"])
    assert res.exit_code == 0, res.output
    assert "Hit@1 over 6 users x 5 candidates" in res.output and "llm_only" not in res.output
    res = runner.invoke(main, ["allmrec", "train", str(path), "--set", "llm.model=/nope/x"])
    assert res.exit_code == 2 and "error: allmrec.llm.model" in res.output
    np.testing.assert_equal(len(pd.read_csv(tmp_path / "job" / "per_user.csv")), 6)


def test_the_benchmark_configs_validate():
    from llmkt.config.allmrec import load_allmrec_config
    from tests.conftest import REPO

    files = sorted((REPO / "benchmarks" / "allmrec").glob("*.yaml"))
    assert {f.name for f in files} >= {"beauty.yaml", "ml1m_half.yaml"}
    for f in files:
        cfg = load_allmrec_config(f)
        assert cfg.candidates.n == 20 and cfg.prompt.n_history == 10  # the paper's protocol
