"""LLM-KT's tables on one harness: base vs knowledge transfer for general CF models (NeuMF, SimpleX, MultVAE:
NDCG@10, Recall@10, HR@10) and base vs KAR vs transfer for click-prediction models (DCN, DeepFM: AUC), on the
time-ordered 70/10/20 ratio split, full ranking, mean ± std over seeds, alpha chosen on validation.

Profile vectors (all built from the ratio split's training part only):
* ``llm``: the offline default LLM's profiles (profile job = configs/profiles_ml100k.yaml with this dataset and
  split), used only if every user has one in the store;
* ``template``: the no-LLM control (statistics of the training history), generated here if missing;
* ``leak``: LEAK-BY-DESIGN genre histogram of each user's validation + test items, a diagnostic of the mechanism,
  never a result;
* ``random``: ``ProfileVectors.control('random')`` of the template vectors (each dimension's mean and std), the
  control every transfer row is read against;
* ``shuffled``: adds ``<kind>~shuffle`` rows for ``llm`` and ``template``: the same vectors, each user given another
  user's (``vectors.control: shuffle``), the control with the real vectors' distribution.
Text vectors are embedded with all-MiniLM-L6-v2 and reduced by PCA (fitted on training users) to the layer width.

    python benchmarks/cf_ctr_results.py --data-dir ../shared/data --datasets ml-100k ml-1m-half --seeds 1 2 3
    python benchmarks/report_results.py benchmarks/results/cf_ctr_*.json > docs/results.md   # tables

Rows are appended to the output JSON as they finish; a rerun skips finished rows (resumable).

On a machine without the encoder's weights (a GPU box), build the vectors here first and ship them:

    python benchmarks/cf_ctr_results.py --data-dir ../shared/data --vectors-only     # writes runs/cf_ctr_vectors
    python benchmarks/cf_ctr_results.py --data-dir DATA --vectors-dir VECS --device cuda --shard 0/4 ...

``--shard i/n`` runs every n-th row (for parallel processes) and writes ``cf_ctr_<dataset>.shard<i>.json``;
``report_results.py`` merges the shard files of a dataset.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

import llmkt
from llmkt.data import columns as C
from llmkt.experiments.inputs import load_dataset, split_dataset
from llmkt.data.vectors import ProfileVectors

CF = {
    "neumf": {"model": {"name": "neumf"}, "training": {"epochs": 20, "batch_size": 1024, "lr": 0.001}},
    "simplex": {"model": {"name": "simplex"}, "training": {"epochs": 20, "batch_size": 1024, "lr": 0.001}},
    "multvae": {"model": {"name": "multvae"}, "training": {"epochs": 100, "batch_size": 128, "lr": 0.001}},
}
CTR = {
    "deepfm": {"model": {"name": "deepfm"}, "training": {"epochs": 10, "batch_size": 1024, "lr": 0.001}},
    "dcn": {"model": {"name": "dcn"}, "training": {"epochs": 10, "batch_size": 1024, "lr": 0.001}},
}


def base_config(dataset: str, data_dir: str, model: str, seed: int, device: str, out_dir: str,
                epochs: int | None = None) -> dict:
    """The run config of a table row's base model (ratio split, the model's training settings, no checkpoints)."""
    spec = {**CF, **CTR}[model]
    return {"data": {"name": dataset, "data_dir": data_dir}, "split": {"kind": "ratio"},
            "model": dict(spec["model"]),
            "training": {**spec["training"], "seed": seed, "progress": False, "device": device,
                         **({"epochs": epochs} if epochs else {})},
            "output": {"dir": out_dir, "save_checkpoints": False}}


def genre_vocab(split) -> list[str]:
    """The dataset's genres sorted by name: the columns of ``genre_histograms``."""
    return sorted({g for gs in split.dataset.items["genres"].fillna("") for g in gs.split("|") if g})


def genre_histograms(split, frame: pd.DataFrame) -> np.ndarray:
    """(n_users + 1, n_genres) normalised genre histogram of ``frame``'s items per internal user id (columns in
    ``genre_vocab`` order; a user without rows in ``frame`` gets zeros)."""
    items = split.dataset.items.set_index(C.IID)["genres"].fillna("")
    vocab = genre_vocab(split)
    onehot = np.zeros((split.dataset.n_items + 1, len(vocab)), dtype=np.float32)
    for iid, gs in items.items():
        for g in gs.split("|"):
            if g:
                onehot[iid, vocab.index(g)] = 1.0
    hist = np.zeros((split.dataset.n_users + 1, len(vocab)), dtype=np.float32)
    np.add.at(hist, frame[C.UID].to_numpy(), onehot[frame[C.IID].to_numpy()])
    return hist / np.maximum(hist.sum(1, keepdims=True), 1.0)


def genre_leak(split) -> ProfileVectors:
    """LEAK BY DESIGN: normalised genre histogram of each user's validation + test items."""
    held = pd.concat([split.valid, split.test])
    users = np.unique(held[C.UID].to_numpy())
    return ProfileVectors(split.dataset.user_map.to_external(users), genre_histograms(split, held)[users],
                          {"source": "LEAK-BY-DESIGN genre histogram of validation + test items"})


def profile_job(dataset: str, data_dir: str, backend: dict | None, store: str) -> dict:
    """configs/profiles_ml100k.yaml for ``dataset`` on the ratio split; ``backend`` None keeps the file's LLM
    (the same key as ``llmkt profiles generate configs/profiles_ml100k.yaml --set split.kind=ratio
    --set store=profiles/{dataset}-ratio.sqlite``)."""
    import yaml

    job = yaml.safe_load(Path("configs/profiles_ml100k.yaml").read_text())
    job["data"] = {"name": dataset, "data_dir": data_dir}
    job["split"] = {"kind": "ratio"}
    if backend is not None:
        job["backend"] = backend
    job["store"] = store
    job["progress"] = False
    return job


def text_vectors(job: dict, generate: bool, tmp: Path, name: str) -> Path | None:
    """Vectors of a profile job as a .npz, or None when the store does not cover every user."""
    from llmkt.experiments.profiles import embed_profiles, export_vectors
    from llmkt.experiments.profiles import generate_profiles
    from llmkt.experiments.profiles import job_stats

    if generate:
        generate_profiles(job)
    if not Path(job["store"]).exists() or job_stats(job)["missing"] > 0:
        return None
    embed_profiles(job)
    pv = export_vectors(job)
    return pv.save(tmp / f"{name}.npz")


def references(cfg0, split) -> dict:
    """Non-learned references on the test stage: popularity ranking (CF) and item click rate (CTR)."""
    from llmkt.evaluation.baselines import evaluate_item_rate, evaluate_popularity
    from llmkt.evaluation.ranking import RankingProtocol

    pop = evaluate_popularity(split, "test", RankingProtocol(ks=[10]))
    rate = evaluate_item_rate(split, "test", cfg0.data.positive_rating)
    return {"popularity": {k: pop.metrics[k] for k in ("NDCG@10", "Recall@10", "HR@10")},
            "item click rate": {k: rate.metrics[k] for k in ("AUC", "LogLoss")}}


def build_vectors(dataset: str, ds, split, data_dir: str, kinds: list[str], tmp: Path) -> dict[str, Path]:
    """Every vector file the rows need (plus ``items``), reusing files already in ``tmp``."""
    path = {k: tmp / f"{dataset}-{k}.npz" for k in ("llm", "template", "random", "leak", "items")}
    if "llm" in kinds and not path["llm"].exists():
        text_vectors(profile_job(dataset, data_dir, None, f"profiles/{dataset}-ratio.sqlite"),
                     False, tmp, f"{dataset}-llm")
    if {"template", "random", "shuffled"} & set(kinds) and not path["template"].exists():
        text_vectors(profile_job(dataset, data_dir, {"kind": "template"},
                                 f"profiles/{dataset}-ratio-template.sqlite"), True, tmp, f"{dataset}-template")
    if "random" in kinds and not path["random"].exists():
        # the library's one random control (per-dimension mean and std); the rows in docs/results.md before
        # 2026-12-01 used N(0, one overall std) instead, see docs/results.md
        ProfileVectors.load(path["template"]).control("random", 0).save(path["random"])
    if "leak" in kinds and not path["leak"].exists():
        genre_leak(split).save(path["leak"])
    if not path["items"].exists():
        from llmkt.profiles.items import item_text_vectors

        item_text_vectors(ds).save(path["items"])
    wanted = set(kinds) | {"items"} | ({"template"} if "shuffled" in kinds else set())
    return {k: p for k, p in path.items() if k in wanted and p.exists()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--datasets", nargs="+", default=["ml-100k", "ml-1m-half"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.5])
    ap.add_argument("--kinds", nargs="+", default=["llm", "template", "leak", "random", "shuffled"],
                    choices=["llm", "template", "leak", "random", "shuffled"])
    ap.add_argument("--models", nargs="+", default=[*CF, *CTR])
    ap.add_argument("--epochs", type=int, default=None, help="override every model's epochs (quick checks)")
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--vectors-dir", default="runs/cf_ctr_vectors",
                    help="where vectors are written, or read from when they already exist")
    ap.add_argument("--vectors-only", action="store_true", help="build the vectors and stop")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th row starting at i")
    args = ap.parse_args()
    tmp = Path(args.vectors_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    shard_i, shard_n = (int(x) for x in args.shard.split("/"))

    for dataset in args.datasets:
        suffix = f".shard{shard_i}" if shard_n > 1 else ""
        out = Path(args.out_dir) / f"cf_ctr_{dataset}{suffix}.json"
        state = json.loads(out.read_text()) if out.exists() else {"rows": [], "vectors": {}}
        # rows finished by any shard (the shard of a row depends on the kinds asked for)
        done = {(r["model"], r["variant"], r["alpha"], r["seed"])
                for f in Path(args.out_dir).glob(f"cf_ctr_{dataset}*.json") for r in json.loads(f.read_text())["rows"]}
        cfg0 = llmkt.load_config(None, [f"data.data_dir={args.data_dir}", f"data.name={dataset}", "split.kind=ratio"])
        ds = load_dataset(cfg0)
        split = split_dataset(cfg0, ds)

        if "references" not in state:
            state["references"] = references(cfg0, split)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(state, indent=1, default=str))
        vectors = build_vectors(dataset, ds, split, args.data_dir, args.kinds, tmp)
        item_vectors = vectors.pop("items")
        state["vectors"].setdefault("items", "item metadata text (title, year, genres), all-MiniLM-L6-v2")
        if "llm" in args.kinds and "llm" not in vectors:
            state["vectors"]["llm"] = "not available (store incomplete)"
        state["vectors"].update({k: str(v) for k, v in vectors.items()})
        if args.vectors_only:
            print(f"{dataset}: vectors in {tmp}: {sorted(p.name for p in tmp.glob(dataset + '-*.npz'))}")
            continue
        counter = iter(range(10**9))
        # variants: every vector kind, plus "<text kind>~shuffle" (each user gets another user's vector) for the
        # text kinds when "shuffled" is asked for: the control with the real vectors' distribution
        variants = [k for k in vectors] + [f"{k}~shuffle" for k in ("llm", "template")
                                           if k in vectors and "shuffled" in args.kinds]

        def run(model: str, variant: str, alpha: float | None, seed: int) -> None:
            key = (model, variant, alpha, seed)
            if next(counter) % shard_n != shard_i or key in done:
                return
            spec = {**CF, **CTR}[model]
            cfg = base_config(dataset, args.data_dir, model, seed, args.device, f"runs/cf_ctr/shard{shard_i}",
                              args.epochs)
            kind, _, control = variant.split(":")[-1].partition("~")
            user_vectors = {"path": str(vectors.get(kind)), "control": control or "none"}
            if variant.startswith("transfer:"):
                # text vectors (384-d): PCA to the layer's width; the 19-d leak histogram: as is, through an
                # orthogonal projection (docs/transfer.md), since some default layers are narrower than 19
                shape = {"reducer": {"method": "none"}, "alignment": "projection"} if kind == "leak" else \
                    {"reducer": {"method": "pca"}}
                cfg["transfer"] = {"vectors": user_vectors, **shape, "alpha": alpha,
                                   "compare_base": False}
            elif variant.startswith("kar:"):
                cfg["model"] = {"name": "kar", "backbone": dict(spec["model"]),
                                "user_knowledge": user_vectors,
                                "item_knowledge": {"path": str(item_vectors)}}
            t0 = time.perf_counter()
            res = llmkt.train(cfg, data=ds)
            row = {"model": model, "variant": variant, "alpha": alpha, "seed": seed,
                   "valid": res.valid.metrics, "test": res.test.metrics, "seconds": time.perf_counter() - t0,
                   "best_epoch": res.best_epoch, "device": args.device}
            state["rows"].append(row)
            done.add(key)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(state, indent=1, default=str))
            print(json.dumps({k: v for k, v in row.items() if k != "valid"}), flush=True)

        for seed in args.seeds:
            for model in args.models:
                run(model, "base", None, seed)
                for kind in variants:
                    for alpha in args.alphas:
                        run(model, f"transfer:{kind}", alpha, seed)
                    if model in CTR and kind != "leak":  # KAR reads knowledge as input: no leak diagnostic
                        run(model, f"kar:{kind}", None, seed)


if __name__ == "__main__":
    main()
