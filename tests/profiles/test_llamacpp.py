"""Real LLM tests: SmolLM2-135M-Instruct (GGUF, from PyPI) through llama.cpp, in process, in worker processes,
and behind llama-cpp-python's OpenAI-compatible server. CI installs llama-cpp-python and sets LLMKT_REQUIRE_LLM=1
so that these tests fail instead of being skipped when something is missing."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from llmkt.profiles.history import check_leak_free

from .conftest import MODEL, _need
from .http_helpers import FaultProxy, Server


def _job(shared_data, tmp_path, **extra):
    cfg = {"data": {"name": "ml-100k", "data_dir": str(shared_data)}, "store": str(tmp_path / "p.sqlite"),
           "users": {"limit": 3}, "progress": False,
           "prompt": {"max_items": 10, "max_prompt_tokens": 600},
           "backend": {"kind": "llamacpp", "model": MODEL, "n_ctx": 1024, "threads": 2},
           "generation": {"max_tokens": 48, "temperature": 0.0, "seed": 0}}
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) and k != "backend" else v
    return cfg


@pytest.mark.realdata
def test_three_ml100k_users_profiled_stored_and_skipped_on_rerun(smollm2, shared_data, tmp_path):
    from llmkt.experiments.profiles import generate_profiles, job_histories
    from llmkt.experiments.profiles import job_profiles

    cfg = _job(shared_data, tmp_path)
    t0 = time.perf_counter()
    r = generate_profiles(cfg)
    first = time.perf_counter() - t0
    assert (r.users, r.generated, r.failed) == (3, 3, 0)
    assert r.prompt_tokens > 3 * 200 and 0 < r.completion_tokens <= 3 * 48
    split, hs = job_histories(generate_profiles.__globals__["load_profiles_config"](cfg))
    recs = job_profiles(cfg)
    assert [x.external_user for x in recs] == [h.user_id for h in hs]
    for rec, h in zip(recs, hs):
        assert rec.model_id.startswith("llamacpp:SmolLM2-135M-Instruct.Q4_1.gguf:98362432:")
        assert len(rec.text.split()) >= 3 and rec.calls == 1
        assert rec.n_items == 10 and rec.history_keys == h.keys()[-10:]  # the 10 most recent training items
        assert (rec.cutoff_timestamp, rec.cutoff_order) == h.cutoff
        assert json.loads(rec.settings)["max_tokens"] == 48
    check_leak_free([(x.external_user, x.history_keys) for x in recs], split)
    t0 = time.perf_counter()
    again = generate_profiles(cfg)
    assert (again.cached, again.generated) == (3, 0)
    assert time.perf_counter() - t0 < first  # no model call on the rerun


@pytest.mark.realdata
def test_worker_processes_die_with_a_killed_parent_and_the_rerun_completes(smollm2, shared_data, tmp_path):
    cfg = _job(shared_data, tmp_path, users={"limit": 6}, workers=2,
               backend={"kind": "llamacpp", "model": MODEL, "n_ctx": 1024, "threads": 1})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(cfg))
    db = tmp_path / "p.sqlite"
    cmd = [sys.executable, "-m", "llmkt.cli", "profiles", "generate", str(path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def count():
        try:
            con = sqlite3.connect(db, timeout=30)
            return con.execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    deadline = time.time() + 240
    while count() < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2.0)
    alive = [c for c in children if os.path.exists(f"/proc/{c}") and
             "spawn_main" in open(f"/proc/{c}/cmdline").read().replace("\0", " ")]
    assert not alive, f"workers survived their parent: {alive}"
    stored = count()
    assert 2 <= stored <= 6
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"already stored: {stored}, generated now: {6 - stored}" in done.stdout
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(DISTINCT user_id), COUNT(*) FROM profiles").fetchone() == (6, 6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.realdata
def test_openai_backend_against_llama_cpp_server_recovers_from_failed_requests(smollm2, shared_data, tmp_path):
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        _need("llama-cpp-python[server] extras are missing")
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # a file, not a pipe: an unread pipe fills up and blocks the server
    server = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2), "--host",
                               "127.0.0.1", "--port", str(port), "--n_ctx", "1024", "--n_threads", "2",
                               "--model_alias", "smollm2"], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise AssertionError("llama_cpp.server did not start: " +
                                         (tmp_path / "server.log").read_text(errors="replace")[-2000:])
                time.sleep(0.5)
        from llmkt.experiments.profiles import generate_profiles
        from llmkt.experiments.profiles import job_profiles

        with Server(FaultProxy, upstream=f"http://127.0.0.1:{port}", fail=[503, 502]) as proxy:
            cfg = _job(shared_data, tmp_path, users={"limit": 2},
                       backend={"kind": "openai", "model": "smollm2", "base_url": proxy.url, "api_key_env": None,
                                "backoff": 0.05, "concurrency": 1})
            r = generate_profiles(cfg)
        assert (r.generated, r.failed) == (2, 0)
        # two injected failures, then one successful request per user
        assert len(proxy.requests) == 4
        recs = job_profiles(cfg)
        assert [x.model_id for x in recs] == ["openai:smollm2"] * 2
        assert all(x.text and x.completion_tokens > 0 for x in recs)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
