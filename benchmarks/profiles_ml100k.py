"""Profiles for every ml-100k user (leave-one-out training histories) with the offline default LLM, plus the
``template`` control; then embedding (all-MiniLM-L6-v2) and reduction (UMAP and PCA to 64), timed.

    python benchmarks/profiles_ml100k.py --data-dir ../shared/data            # resumable; rerun to continue
    python benchmarks/profiles_ml100k.py --data-dir ../shared/data --skip-llm # only report / embed what exists
    python benchmarks/profiles_ml100k.py --data-dir ../shared/data --retry-flagged  # regenerate flagged ones first

Writes benchmarks/results/profiles_ml100k.json (times, tokens, flags, 5 sample profiles verbatim) and exports the
profile texts to data/profiles/ml-100k/ (JSONL, small enough for git; see its README).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

CONFIG = "configs/profiles_ml100k.yaml"
OUT = Path("benchmarks/results/profiles_ml100k.json")
TEXTS = Path("data/profiles/ml-100k")


def main() -> None:
    import llmkt  # noqa: F401 - sets OMP_WAIT_POLICY before torch loads
    from llmkt.experiments.profiles import embed_profiles, export_vectors
    from llmkt.experiments.profiles import generate_profiles
    from llmkt.experiments.profiles import job_profiles, job_stats
    from llmkt.transfer.reduce import Reducer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--skip-llm", action="store_true", help="do not generate; report what is stored")
    ap.add_argument("--retry-flagged", action="store_true",
                    help="regenerate the flagged profiles (seed + attempt) before reporting")
    ap.add_argument("--samples", type=int, default=5)
    args = ap.parse_args()
    ov = [f"data.data_dir={args.data_dir}"] if args.data_dir else []
    result: dict = {"config": CONFIG}
    previous = json.loads(OUT.read_text()) if OUT.exists() else {}

    if not args.skip_llm:
        r = generate_profiles(CONFIG, ov)
        result["last_generate_call"] = {"generated": r.generated, "cached": r.cached, "failed": r.failed,
                                        "seconds": round(r.seconds, 1)}
    if args.retry_flagged:
        before = job_stats(CONFIG, ov)["flags"]
        r = generate_profiles(CONFIG, ov, retry_flagged=True)
        result["retry_flagged"] = {"flags_before": before, "regenerated": r.generated, "failed": r.failed,
                                   "still_flagged": r.flagged, "seconds": round(r.seconds, 1),
                                   "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens}
    elif "retry_flagged" in previous:
        result["retry_flagged"] = previous["retry_flagged"]
    stats = job_stats(CONFIG, ov)
    result["llm"] = {k: v for k, v in stats.items() if k != "flagged_examples"}
    recs = job_profiles(CONFIG, ov)
    result["llm"]["wall_hours_sum_of_profile_seconds"] = round(sum(r.seconds for r in recs) / 3600, 2)
    # 5 samples spread over the users, verbatim
    idx = np.linspace(0, len(recs) - 1, num=min(args.samples, len(recs))).round().astype(int) if recs else []
    result["samples"] = [{"user_id": recs[i].external_user, "items_shown": recs[i].n_items,
                          "prompt_tokens": recs[i].prompt_tokens, "completion_tokens": recs[i].completion_tokens,
                          "seconds": round(recs[i].seconds, 1), "text": recs[i].text} for i in idx]

    t0 = time.perf_counter()
    tr = generate_profiles(CONFIG, ov + ["backend={kind: template}"])
    result["template"] = {"profiles": tr.users, "generated_now": tr.generated,
                          "seconds": round(time.perf_counter() - t0, 1)}
    tmpl = job_profiles(CONFIG, ov + ["backend={kind: template}"])
    result["template"]["sample"] = tmpl[idx[0]].text if len(tmpl) and len(idx) else None

    complete = stats["missing"] == 0
    result["complete"] = complete
    if recs:
        t0 = time.perf_counter()
        er = embed_profiles(CONFIG, ov)
        t_embed = time.perf_counter() - t0
        pv = export_vectors(CONFIG, ov)
        timings = {"embed_s": round(t_embed, 1), "embedded_now": er.embedded, "profiles": er.profiles,
                   "dim": er.dim, "encoder": er.encoder_id}
        for method in ("pca", "umap"):
            t0 = time.perf_counter()
            red = Reducer(method, 64, seed=0).fit(pv.vectors)
            out = red.transform(pv.vectors)
            timings[f"{method}_64_s"] = round(time.perf_counter() - t0, 1)
            timings[f"{method}_shape"] = list(out.shape)
        tr_er = embed_profiles(CONFIG, ov + ["backend={kind: template}"])
        timings["template_embed_s"] = round(tr_er.seconds, 1)
        if er.embedded < er.profiles and "embedding" in previous:
            # only some profiles were (re)embedded now: keep the full measurement, add this one beside it
            result["embedding"] = previous["embedding"]
            result["embedding_update"] = timings if er.embedded else previous.get("embedding_update", timings)
        else:
            result["embedding"] = timings
        TEXTS.mkdir(parents=True, exist_ok=True)
        for name, rows in (("llm", recs), ("template", tmpl)):
            with open(TEXTS / f"profiles_{name}.jsonl", "w") as f:
                for r in rows:
                    f.write(json.dumps({"user_id": r.external_user, "model": r.model_id, "prompt_hash": r.prompt_hash,
                                        "history_hash": r.history_hash, "cutoff_timestamp": r.cutoff_timestamp,
                                        "items_shown": r.n_items, "text": r.text}) + "\n")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1, default=str))


if __name__ == "__main__":
    main()
