"""Tiny finished runs (2 epochs on a 30-user CSV dataset) and their exports, shared by the serving tests."""

from pathlib import Path

import pytest

from tests.test_bad_inputs import write_csv_data

MODELS = {
    "sasrec": {"name": "sasrec", "max_len": 10, "hidden": 16, "n_blocks": 1, "n_heads": 1},
    "multvae": {"name": "multvae", "hidden": 16, "latent": 8},
    "bprmf": {"name": "bprmf", "dim": 8},
    "lightgcn": {"name": "lightgcn", "dim": 8, "n_layers": 2},
}


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> dict[str, Path]:
    import llmkt

    tmp = tmp_path_factory.mktemp("serving")
    data = write_csv_data(tmp / "data")
    runs = {}
    for key, model in MODELS.items():
        cfg = {"data": {"name": "csv", "path": str(data)}, "model": model,
               "training": {"epochs": 2, "batch_size": 16, "progress": False, "device": "cpu", "seed": 3},
               "output": {"dir": str(tmp / "runs"), "name": key}}
        runs[key] = llmkt.train(cfg).run_dir
    return runs


@pytest.fixture(scope="session")
def tiny_exports(tiny_runs, tmp_path_factory) -> dict[str, Path]:
    from llmkt.experiments.export import export_run

    out = tmp_path_factory.mktemp("exports")
    return {key: export_run(run, out / key, history="test") for key, run in tiny_runs.items()}
