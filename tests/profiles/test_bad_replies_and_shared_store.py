"""A misbehaving server never ends a job or slips an empty profile into the store, and two generate processes on one
store share the work (issue 14, points 2 and 3)."""

import asyncio
import os
import subprocess
import sys
import time

import pytest
import yaml

from llmkt.profiles.backends.base import BackendError, GenerationSettings
from llmkt.profiles.backends.openai_api import OpenAIBackend
from llmkt.experiments.profiles import generate_profiles
from llmkt.experiments.profiles import job_stats
from llmkt.profiles.store import ProfileStore
from tests.conftest import random_interactions

from .http_helpers import FakeOpenAI, GarbageOpenAI, Server

MSGS = [{"role": "user", "content": "Here:\n- Alpha (1995) | Drama\n"}]


def _job(tmp_path, url: str, n_users: int, concurrency: int = 4, **backend) -> dict:
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    random_interactions(n_users=n_users, n_items=30, per_user=6, seed=1).to_csv(folder / "interactions.csv",
                                                                                index=False)
    return {"data": {"name": "csv", "path": str(folder)}, "store": str(tmp_path / "p.sqlite"), "progress": False,
            "backend": {"kind": "openai", "model": "fake", "base_url": url, "api_key_env": None,
                        "concurrency": concurrency, "backoff": 0.01, "max_backoff": 0.05, **backend}}


@pytest.mark.parametrize("reply", [
    '<html>502</html>', '', '{"object": "error"}', '{"choices": []}', '[1, 2]',
    '{"choices": [{"message": {"content": ""}}]}', '{"choices": [{"message": {"content": "  \\n "}}]}',
    '{"choices": [{"message": {"content": null}}]}', '{"choices": [{"message": {"content": 42}}]}'])
def test_an_unusable_200_reply_is_retried_then_reported(reply):
    from .http_helpers import _Base

    class Bad(_Base):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with self.owner.lock:
                self.owner.requests.append((self.path, {}, {}))
            self._send(200, reply)

    with Server(Bad) as srv:
        b = OpenAIBackend("m", srv.url, api_key_env=None, backoff=0.0, max_retries=2)
        with pytest.raises(BackendError, match="gave up after 3 attempts; last error HTTP 200 with "):
            asyncio.run(b.acomplete(MSGS, GenerationSettings()))
    assert len(srv.requests) == 3 and b.client.bad_replies == 3


def test_garbage_and_empty_replies_never_end_the_job_nor_reach_the_store(tmp_path):
    """8 % garbage bodies and 5 % empty contents: one run profiles every user exactly once, a few retried."""
    n = 120
    with Server(GarbageOpenAI, garbage=0.08, empty=0.05, seed=5) as srv:
        r = generate_profiles(_job(tmp_path, srv.url, n))
        bad = list(getattr(srv, "bad", []))
    kinds = {k for _, k in bad}
    assert kinds == {"garbage", "empty"} and len(bad) >= 8, bad  # the server did misbehave, both ways
    assert (r.users, r.generated, r.failed, r.errors) == (n, n, 0, [])
    with ProfileStore(tmp_path / "p.sqlite") as s:
        recs = list(s.records())
    assert len(recs) == n and len({x.user_id for x in recs}) == n  # exactly once each
    assert all(x.text.strip() for x in recs)
    stats = job_stats(_job(tmp_path, srv.url, n))
    assert stats["profiles"] == n and "empty" not in stats["flags"] and stats["words_min"] > 0
    assert len(srv.requests) == n + len(bad)  # every bad reply was retried once more, nothing else


def test_an_empty_answer_from_any_backend_is_retried_with_the_next_seed_then_fails(csv_folder, tmp_path, monkeypatch):
    """The same rule for local backends: an empty text is a failed attempt (next seed), never a stored profile."""
    import llmkt.experiments.profiles as gen
    from llmkt.profiles.backends.base import Backend, Generation

    class Mute(Backend):
        """Empty or whitespace answers for the first 6 calls, then a profile."""
        model_id = "fake:mute"

        def __init__(self):
            self.seeds = []

        def complete(self, messages, settings):
            self.seeds.append(settings.seed)
            text = ["", " \n\t"][len(self.seeds) % 2] if len(self.seeds) <= 6 else "Likes dramas, rates generously."
            return Generation(text, 10, 3, "stop")

    backend = Mute()
    monkeypatch.setattr(gen, "backend_factory", lambda cfg: lambda: backend)
    monkeypatch.setattr(gen, "backend_model_id", lambda cfg: "fake:mute")
    cfg = {"data": {"name": "csv", "path": str(csv_folder)}, "store": str(tmp_path / "s.sqlite"), "progress": False,
           "backend": {"kind": "hf", "model": "x"}, "generation": {"seed": 10, "empty_retries": 2}}
    r = generate_profiles(cfg)
    assert (r.generated, r.failed) == (0, 2) and "empty text 3 time(s) (seeds 10..12)" in r.errors[0]
    assert backend.seeds == [10, 11, 12, 10, 11, 12]
    with ProfileStore(tmp_path / "s.sqlite") as s:
        assert s.count() == 0
    r = generate_profiles(cfg)
    assert (r.generated, r.failed) == (2, 0) and backend.seeds[6:] == [10, 10]


def test_leases_keep_a_user_from_being_generated_twice(tmp_path):
    with ProfileStore(tmp_path / "s.sqlite") as s:
        assert s.claim("k1", "hostA:1:a") == "claimed"
        assert s.claim("k1", "hostB:2:b") == "busy"  # another host: never judged dead
        assert s.claim("k1", "hostA:1:a") == "claimed"  # the owner may renew
        assert s.claim("k1", "hostB:2:b", ttl=1) == "busy"
        s.conn.execute("UPDATE leases SET expires = 0")  # the lease ran out: free again
        assert s.claim("k1", "hostB:2:b") == "claimed"
        s.release("k1", "hostB:2:b")
        assert s.leased() == {}


def test_a_lease_of_a_dead_process_on_this_host_does_not_wait_for_expiry(tmp_path):
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with ProfileStore(tmp_path / "s.sqlite") as s:
        assert s.claim("k", f"{socket.gethostname()}:{dead.pid}:x") == "claimed"
        assert s.claim("k", f"{socket.gethostname()}:{os.getpid()}:y") == "claimed"  # the dead one lost it
        assert s.claim("k", f"{socket.gethostname()}:{os.getpid()}:z") == "busy"  # a live one keeps it


def test_two_generate_processes_on_one_store_share_the_work(tmp_path):
    n = 100
    with Server(FakeOpenAI, delay=0.15) as srv:  # ~7.5 s of work for one process with 2 requests in flight
        job = tmp_path / "job.yaml"
        job.write_text(yaml.safe_dump(_job(tmp_path, srv.url, n, concurrency=2)))
        cmd = [sys.executable, "-m", "llmkt.cli", "profiles", "generate", str(job)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
        deadline = time.time() + 120
        while not srv.requests and time.time() < deadline:  # the second starts once the first is at work
            time.sleep(0.05)
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=300) for p in procs]
        requests = len(srv.requests)
    assert [p.returncode for p in procs] == [0, 0], outs
    with ProfileStore(tmp_path / "p.sqlite") as s:
        recs = list(s.records())
        assert s.leased() == {}  # every lease released
    assert len(recs) == n and len({r.user_id for r in recs}) == n
    assert requests <= n * 1.05, f"{requests} LLM requests for {n} users"
    generated = [int(o.split("generated now: ")[1].split(",")[0]) for o, _ in outs]
    assert sum(generated) == n and min(generated) > 0, outs  # both worked, and the counts add up
    assert all("\r" not in err for _, err in outs)  # no progress-bar frames in a log
