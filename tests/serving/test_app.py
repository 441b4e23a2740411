"""The HTTP API (issue 18): answers equal the exported model's, error cases as JSON with the right status, requests
batched on the server, and `llmkt export` / `llmkt serve` from the command line."""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from llmkt.cli import main
from llmkt.serving.app import create_app
from llmkt.serving.exported import load_exported


@pytest.fixture(scope="module")
def sasrec(tiny_exports):
    exp = load_exported(tiny_exports["sasrec"])
    with TestClient(create_app(exp, max_batch=16, max_wait_ms=50)) as client:
        yield exp, client


def test_health_and_metadata(sasrec):
    exp, client = sasrec
    assert client.get("/health").json() == {"status": "ok"}
    meta = client.get("/metadata").json()
    assert meta["model"] == "sasrec" and meta["dataset"] == "csv" and meta["n_items"] == 40
    assert meta["accepts_history"] is True and "NDCG@10" in meta["metrics_at_training"]["test"]
    assert meta["exported_at"] == exp.metadata["exported_at"] and "files" not in meta
    assert "/recommend" in client.get("/openapi.json").json()["paths"]


def test_answers_equal_the_exported_model(sasrec):
    exp, client = sasrec
    user = exp.user_ids[3]
    r = client.post("/recommend", json={"user_id": user, "k": 7})
    assert r.status_code == 200
    body = r.json()
    ref = exp.recommend([user], k=7)
    assert body["user_id"] == user and [i["item_id"] for i in body["items"]] == ref["item_id"].tolist()
    assert [i["score"] for i in body["items"]] == pytest.approx(ref["score"].tolist())
    assert body["items"][0]["title"] == "A film"
    hist = ["i1", "i5", "i7"]
    h = client.post("/recommend/history", json={"item_ids": hist, "k": 3, "exclude_seen": False}).json()
    assert [i["item_id"] for i in h["items"]] == exp.recommend_history(hist, 3, exclude_seen=False)["item_id"].tolist()
    assert h["user_id"] is None


@pytest.mark.parametrize("path, body, status, text", [
    ("/recommend", {"user_id": "nobody"}, 404, "unknown user_id 'nobody'"),
    ("/recommend", {"user_id": "u1", "k": 0}, 422, "k must be between 1 and 40"),
    ("/recommend", {"user_id": "u1", "k": 41}, 422, "k must be between 1 and 40"),
    ("/recommend", {"user_id": "u1", "top": 3}, 422, "extra"),
    ("/recommend/history", {"item_ids": ["i1", "zz", "yy"]}, 422, "'unknown_item_ids': ['zz', 'yy']"),
    ("/recommend/history", {"item_ids": []}, 422, "at least 1 item"),
])
def test_error_cases(sasrec, path, body, status, text):
    _, client = sasrec
    r = client.post(path, json=body)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    assert text in str(r.json()["detail"])


def test_history_to_a_model_with_user_parameters_is_refused(tiny_exports):
    with TestClient(create_app(load_exported(tiny_exports["bprmf"]))) as client:
        r = client.post("/recommend/history", json={"item_ids": ["i1"]})
        assert r.status_code == 422 and "scores known users only" in r.json()["detail"]
        assert client.post("/recommend", json={"user_id": "u2", "k": 2}).status_code == 200


def test_concurrent_requests_are_batched_and_answered_each(sasrec):
    exp, client = sasrec
    before = client.get("/metadata").json()["serving"]
    users = exp.user_ids[:24]
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda u: client.post("/recommend", json={"user_id": u, "k": 4}).json(), users))
    after = client.get("/metadata").json()["serving"]
    assert [a["user_id"] for a in answers] == users
    for u, a in zip(users, answers):
        assert [i["item_id"] for i in a["items"]] == exp.recommend([u], k=4)["item_id"].tolist()
    assert after["requests"] - before["requests"] == 24
    assert after["batches"] - before["batches"] < 24 and after["largest_batch"] > 1  # shared batches


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_export_then_serve_over_http(tiny_runs, tmp_path):
    out = tmp_path / "export"
    res = CliRunner().invoke(main, ["export", str(tiny_runs["multvae"]), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == f"serve it: llmkt serve {out}"
    again = CliRunner().invoke(main, ["export", str(tiny_runs["multvae"]), "-o", str(out)])
    assert again.exit_code == 2 and "exists and is not empty" in again.output
    port = _free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen([sys.executable, "-m", "llmkt", "serve", str(out), "--port", str(port), "--threads", "1",
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        for _ in range(150):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail(f"server did not start: {proc.stdout.read1().decode() if proc.poll() is not None else ''}")
        r = httpx.post(f"http://127.0.0.1:{port}/recommend/history", json={"item_ids": ["i3", "i4"], "k": 5})
        exp = load_exported(out)
        assert r.status_code == 200
        assert [i["item_id"] for i in r.json()["items"]] == exp.recommend_history(["i3", "i4"], 5)["item_id"].tolist()
        assert httpx.get(f"http://127.0.0.1:{port}/metadata").json()["history"] == "all"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_failing_request_does_not_fail_the_others_of_its_batch(tiny_exports, monkeypatch):
    exp = load_exported(tiny_exports["sasrec"])
    bad = exp.user_index(exp.user_ids[5])
    real = exp.top_k

    def top_k(uids, *rest):
        if bad in list(uids):
            raise RuntimeError("scoring failed")
        return real(uids, *rest)

    monkeypatch.setattr(exp, "top_k", top_k)
    with TestClient(create_app(exp, max_batch=16, max_wait_ms=100), raise_server_exceptions=False) as client:
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda u: client.post("/recommend", json={"user_id": u}).status_code,
                                  exp.user_ids[:6]))
    assert codes == [200, 200, 200, 200, 200, 500]
