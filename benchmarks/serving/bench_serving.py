"""Serving benchmark (docs/benchmarks.md, "Serving"): each export behind `llmkt serve` on 127.0.0.1, a bounded load
loop with httpx at several concurrency levels (p50/p95/p99 latency, requests/s), and in-process scoring time per
1,000 users (`load_exported(...).recommend`).

    python benchmarks/serving/bench_serving.py LABEL=EXPORT_DIR ... [--concurrency 1 8 32] [--seconds 15]
        [--threads 1] [--repeats 3] [--out benchmarks/results/serving.json]

Every request asks top-10 for a known user drawn at random (seeded); the server runs with --threads (torch) and its
default batching (max 64 requests, 2 ms wait). The load generator runs in this process on the same machine, so on
a 2-core machine client and server share the cores: the figures are a floor, not a capacity plan.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(export: str, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "llmkt", "serve", export, "--port", str(port), "--threads",
                             str(threads), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server for {export} did not start")


async def load(url: str, users: list, concurrency: int, seconds: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    order = [users[i] for i in rng.integers(0, len(users), size=200_000)]
    latencies: list[float] = []
    errors = 0
    next_i = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker():
            nonlocal next_i, errors
            while time.perf_counter() < deadline and next_i < len(order):
                user = order[next_i]
                next_i += 1
                t0 = time.perf_counter()
                r = await client.post("/recommend", json={"user_id": user, "k": 10})
                latencies.append(time.perf_counter() - t0)
                errors += r.status_code != 200

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    ms = np.asarray(latencies) * 1000
    return {"concurrency": concurrency, "requests": len(ms), "errors": errors, "seconds": wall,
            "rps": len(ms) / wall, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99))}


def in_process(export: str, threads: int, n_users: int = 1000, batch: int = 64) -> dict:
    import torch

    import llmkt

    torch.set_num_threads(threads)
    exp = llmkt.load_exported(export)
    users = exp.user_ids[:n_users]
    exp.recommend(users[:batch], k=10)  # warm-up
    t0 = time.perf_counter()
    for s in range(0, len(users), batch):
        exp.recommend(users[s:s + batch], k=10)
    seconds = time.perf_counter() - t0
    return {"users": len(users), "batch": batch, "seconds_per_1000_users": seconds * 1000 / len(users)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("exports", nargs="+", help="LABEL=EXPORT_DIR")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="runs of every concurrency level (median and range)")
    ap.add_argument("--out", default="benchmarks/results/serving.json")
    args = ap.parse_args()
    rows = []
    for spec in args.exports:
        label, export = spec.split("=", 1)
        meta = json.loads((Path(export) / "metadata.json").read_text())
        users = json.loads((Path(export) / "ids.json").read_text())["users"]
        proc, url = start_server(export, args.threads)
        try:
            asyncio.run(load(url, users, 4, 2.0, args.seed))  # warm-up
            for c in [c for _ in range(args.repeats) for c in args.concurrency]:
                before = httpx.get(f"{url}/metadata").json()["serving"]
                r = asyncio.run(load(url, users, c, args.seconds, args.seed + c))
                after = httpx.get(f"{url}/metadata").json()["serving"]
                batches = after["batches"] - before["batches"]
                mean_batch = (after["requests"] - before["requests"]) / batches if batches else 0.0
                rows.append({"label": label, "model": meta["model"], "dataset": meta["dataset"],
                             "transfer": meta["trained_with_transfer"], **r, "mean_batch": mean_batch})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        ip = in_process(export, args.threads)
        rows.append({"label": label, "model": meta["model"], "dataset": meta["dataset"],
                     "transfer": meta["trained_with_transfer"], "in_process": ip})
        print(json.dumps(rows[-1]), flush=True)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "threads": args.threads},
           "seconds_per_level": args.seconds, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
