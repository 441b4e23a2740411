"""Profile generation against an OpenAI-compatible server at several concurrency levels (docs/benchmarks.md,
"Profile generation at scale"): a real llama.cpp server (`llama-server`) with several parallel slots on 127.0.0.1,
then the same profile job (ml-100k users, the structured prompt, 120 new tokens) with `backend.concurrency` 1, 2, 4,
8, each level against a fresh server (no prompt cached from an earlier level); completion tokens/s of each job's
wall time.

    python benchmarks/profiles_concurrency.py --server PATH/llama-server [--model GGUF] [--parallel 8]
        [--users 24] [--levels 1 2 4 8] [--threads 2] [--out benchmarks/results/profiles_concurrency.json]

`llama-server` is llama.cpp's server (built from the llama.cpp sources, e.g. those vendored in the llama-cpp-python
sdist: `cmake -B build -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF && cmake --build build --target llama-server`); the
default model is the offline SmolLM2-135M-Instruct GGUF (`llmkt weights fetch smollm2-135m-instruct`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--model", default=None, help="GGUF file (default: the smollm2-135m-instruct weights)")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--ctx-per-slot", type=int, default=2048)
    ap.add_argument("--users", type=int, default=24)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=120)
    ap.add_argument("--out", default="benchmarks/results/profiles_concurrency.json")
    args = ap.parse_args()
    from llmkt.experiments.profiles import generate_profiles
    from llmkt.profiles.weights import resolve_model

    model = args.model or str(resolve_model("smollm2-135m-instruct"))
    port = free_port()
    cmd = [args.server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "--parallel", str(args.parallel),
           "--ctx-size", str(args.parallel * args.ctx_per_slot), "--threads", str(args.threads)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        def job(c: int) -> dict:
            return {"data": {"name": "ml-100k"}, "split": {"kind": "leave_one_out"}, "progress": False,
                    "backend": {"kind": "openai", "model": "local", "base_url": f"http://127.0.0.1:{port}/v1",
                                "api_key_env": None, "concurrency": c},
                    "generation": {"max_tokens": args.max_tokens, "temperature": 0.2, "seed": 0},
                    "users": {"limit": args.users}, "store": str(Path(tmp) / f"c{c}.sqlite")}

        for c in args.levels:
            # a fresh server per level: its slots must not hold the prompts of an earlier level (the same users),
            # which it would serve from cache; one short request warms it up without caching any user's prompt
            log = open(Path(tempfile.gettempdir()) / f"llama-server-bench-c{c}.log", "w")
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
            try:
                for _ in range(600):
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    time.sleep(0.2)
                else:
                    raise RuntimeError("llama-server did not become healthy; see " + log.name)
                httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                           json={"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8})
                r = generate_profiles(job(c))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            rows.append({"concurrency": c, "profiles": r.generated, "failed": r.failed, "seconds": r.seconds,
                         "completion_tokens": r.completion_tokens, "prompt_tokens": r.prompt_tokens,
                         "completion_tokens_per_s": r.tokens_per_s,
                         "total_tokens_per_s": (r.prompt_tokens + r.completion_tokens) / r.seconds if r.seconds else 0.0,
                         "profiles_per_min": 60 * r.generated / r.seconds if r.seconds else 0.0})
            print(json.dumps(rows[-1]), flush=True)
    out = {"server": " ".join(Path(a).name if a in (model, args.server) else a for a in cmd), "model": Path(model).name,
           "cpus": os.cpu_count(), "users": args.users, "max_tokens": args.max_tokens, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
