"""A generation killed with SIGKILL mid-run and restarted ends with every user profiled exactly once."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import yaml

from tests.conftest import random_interactions

from .http_helpers import FakeOpenAI, Server


def _count(db):
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM profiles").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _job(tmp_path, srv, n_users: int, seed: int) -> tuple[list[str], object]:
    """A profile job over ``n_users`` random users against the fake server: the CLI command and the store path."""
    folder = tmp_path / "data"
    folder.mkdir()
    random_interactions(n_users=n_users, n_items=30, per_user=8, seed=seed).to_csv(folder / "interactions.csv",
                                                                                   index=False)
    db = tmp_path / "profiles.sqlite"
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "data": {"name": "csv", "path": str(folder)}, "store": str(db), "progress": False,
        "backend": {"kind": "openai", "model": "fake", "base_url": srv.url, "api_key_env": None, "concurrency": 1}}))
    return [sys.executable, "-m", "llmkt.cli", "profiles", "generate", str(path)], db


def _start_until(cmd: list[str], db, n: int) -> subprocess.Popen:
    """Start the job and return once ``n`` profiles are stored (or it ended, or 120 s passed)."""
    # SIGINT back to its default in the child: a test run started in the background by a non-interactive shell
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler (Ctrl-C would do nothing)
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while _count(db) < n and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    return proc


def test_sigkill_mid_run_then_resume(tmp_path):
    with Server(FakeOpenAI, delay=0.25) as srv:
        cmd, db = _job(tmp_path, srv, n_users=12, seed=3)
        proc = _start_until(cmd, db, 4)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stored = _count(db)
        requests_before = len(srv.requests)
        assert 4 <= stored < 12, f"kill came too late or too early: {stored} stored"

        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert f"already stored: {stored}, generated now: {12 - stored}" in done.stdout
        # the rerun asked only for the missing users
        assert len(srv.requests) - requests_before == 12 - stored

    con = sqlite3.connect(db)
    rows = con.execute("SELECT user_id, COUNT(*) FROM profiles GROUP BY user_id").fetchall()
    con.close()
    assert len(rows) == 12 and all(n == 1 for _, n in rows)


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    # 20 users at 0.5 s per reply: the signal lands mid-job even when a busy machine delays this test's polling
    with Server(FakeOpenAI, delay=0.5) as srv:
        cmd, db = _job(tmp_path, srv, n_users=20, seed=4)
        proc = _start_until(cmd, db, 3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (out, err)
        assert "interrupted: finished profiles are stored; rerun the same command to resume." in err
        stored = _count(db)
        assert 3 <= stored < 20
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and f"already stored: {stored}, generated now: {20 - stored}" in done.stdout
