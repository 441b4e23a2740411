"""A-LLMRec jobs: config -> objects (``llmkt allmrec train|evaluate|generate CONFIG``).

Job folder (``cfg.dir``): ``config.yaml`` (resolved), ``stage1_last.pt`` / ``stage1.pt``, ``stage2_last.pt`` /
``stage2.pt`` (projections only; the LLM and the CF model are never copied), ``train_log.jsonl``,
``candidates.csv`` (external ids), ``answers_<model>.jsonl`` (resumable generation), ``per_user.csv``,
``results.json``, ``efficiency.json``, ``generations.csv``. Every step resumes from what is there.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from llmkt.baselines.allmrec import (CandidateSets, FrozenText, ItemTextAlignment, PromptExample, PromptSource,
                                     SoftPromptLM, TunedText, default_template, fit_stage1, fit_stage2,
                                     generate_answers, hit_at_1, hit_at_1_of_scores,
                                     sample_candidates, stage1_data, state_hash)
from llmkt.baselines.allmrec.prompt import MARKER, Slot
from llmkt.baselines.allmrec.train import model_device
from llmkt.config import dump_config
from llmkt.config.allmrec import AllmrecConfig, load_allmrec_config
from llmkt.data import columns as C
from llmkt.data.sequences import padded_sequences, seen_items
from llmkt.errors import ConfigError, DataError
from llmkt.training.checkpoint import load_checkpoint, save_checkpoint


# -- inputs ------------------------------------------------------------------------------------------------------
@dataclass
class CFSide:
    cfg: Any
    dataset: Any
    split: Any
    model: Any
    titles: np.ndarray  # (n_items + 1,) display titles, "" = none


def load_cf(run_dir: str, where: str = "allmrec.cf_run") -> CFSide:
    """The frozen CF model of a finished run, with checks that fail before any training."""
    from llmkt.baselines.allmrec import freeze
    from llmkt.experiments.evaluate import load_run

    if not Path(run_dir).is_dir():
        raise ConfigError(f"{where}: {run_dir} is not a folder; pass a finished llmkt run folder (`llmkt train` "
                          "prints it), e.g. runs/amazon-beauty-sasrec-<time>.")
    cfg, ds, split, model = load_run(run_dir)
    if model.item_embeddings() is None:
        raise ConfigError(f"{where}: the model of {run_dir} ({cfg.model.name}) has no item embeddings "
                          "(Recommender.item_embeddings() is None); A-LLMRec aligns a CF model's item table with "
                          "item text: use sasrec, bert4rec, bprmf or simplex.")
    if model.kind != "sequential":
        raise ConfigError(f"{where}: the model of {run_dir} ({cfg.model.name}) is a {model.kind!r} model; A-LLMRec "
                          "reads the user representation from the item sequence: use sasrec or bert4rec.")
    if ds.items is None or "title" not in ds.items.columns:
        cols = [] if ds.items is None else sorted(ds.items.columns)
        raise DataError(f"{where}: dataset {ds.name!r} has no item titles (items table columns: {cols or 'none'}); "
                        "A-LLMRec's prompts and answers are titles: give the dataset an items table with a `title` "
                        "column (amazon-beauty's items.tsv, MovieLens' movies).")
    titles = np.full(ds.n_items + 1, "", dtype=object)
    titles[ds.items[C.IID].to_numpy()] = ds.items["title"].fillna("").astype(str).to_numpy()
    missing = int((titles[1:] == "").sum())
    if missing == ds.n_items:
        raise DataError(f"{where}: every item title of dataset {ds.name!r} is empty.")
    titles[titles == ""] = "(untitled item)"
    return CFSide(cfg, ds, split, freeze(model), titles)


def _device(cfg: AllmrecConfig) -> str:
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("allmrec.device: cuda was asked for but torch sees no GPU; use device: cpu or auto.")
    return cfg.device


def check_llm_source(spec: str) -> None:
    """Fail early (before stage 1) on an LLM that cannot load: a missing path, a folder without config.json."""
    from llmkt.profiles.weights import REGISTRY

    if spec in REGISTRY:
        return
    p = Path(spec).expanduser()
    looks_local = spec.startswith((".", "/", "~")) or p.exists()
    if looks_local and not p.exists():
        raise ConfigError(f"allmrec.llm.model: {spec} does not exist; expected a model folder (with config.json), "
                          f"a .gguf file, a Hugging Face hub name or a weights name ({sorted(REGISTRY)}).")
    if p.is_dir() and not (p / "config.json").is_file() and not list(p.glob("*.gguf")):
        raise ConfigError(f"allmrec.llm.model: {p} is a folder without config.json or a .gguf file, so "
                          "transformers cannot load a model from it.")
    if p.is_file() and p.suffix != ".gguf":
        raise ConfigError(f"allmrec.llm.model: {p} is a file but not a .gguf; pass its model folder instead.")


def _llm_source(spec: str) -> tuple[str, dict[str, Any]]:
    from llmkt.profiles.weights import REGISTRY, fetch_weights

    src = str(fetch_weights(spec)) if spec in REGISTRY else spec
    kw: dict[str, Any] = {}
    p = Path(src).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        src, kw["gguf_file"] = str(p.parent), p.name
    elif p.is_dir() and not (p / "config.json").exists() and list(p.glob("*.gguf")):
        kw["gguf_file"] = sorted(p.glob("*.gguf"))[0].name
    return src, kw


def _load_error(spec: str, e: Exception) -> ConfigError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    return ConfigError(f"allmrec.llm.model: transformers could not load {spec!r} ({type(e).__name__}: {first}); "
                       "expected a causal-LM folder with config.json, a .gguf file (needs `gguf`), a hub name "
                       "available offline, or a weights name (llmkt weights list).")


def probe_llm(spec: str) -> None:
    """Before any training: the LLM's config and tokenizer load (cheap), so a broken model fails first."""
    check_llm_source(spec)
    try:
        from transformers import AutoConfig, AutoTokenizer
    except ImportError as e:
        raise ConfigError("A-LLMRec's stage 2 needs transformers (and gguf for .gguf files): "
                          "pip install 'llmkt[hf]'.") from e
    src, kw = _llm_source(spec)
    try:
        AutoConfig.from_pretrained(src, **kw)
        AutoTokenizer.from_pretrained(src, **kw)
    except Exception as e:  # noqa: BLE001 - any loader failure is the same user error
        raise _load_error(spec, e) from None


def load_llm(cfg: AllmrecConfig, device: str):
    """``(model, tokenizer)`` of ``cfg.llm.model`` via transformers (GGUF files are dequantised by transformers)."""
    check_llm_source(cfg.llm.model)
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as e:
        raise ConfigError("A-LLMRec's stage 2 needs transformers (and gguf for .gguf files): "
                          "pip install 'llmkt[hf]'.") from e
    src, kw = _llm_source(cfg.llm.model)
    dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16, "float16": torch.float16}[cfg.llm.dtype]
    try:
        tok = AutoTokenizer.from_pretrained(src, **kw)
        llm = AutoModelForCausalLM.from_pretrained(src, dtype=dtype, **kw).to(device)
    except Exception as e:  # noqa: BLE001 - any loader failure is the same user error
        raise _load_error(cfg.llm.model, e) from None
    return llm, tok


def _train_users(cfg: AllmrecConfig, cf: CFSide) -> np.ndarray:
    """Training users of both stages: all, or the few-shot share ``users.train_fraction`` (seeded)."""
    users = np.unique(cf.split.train[C.UID].to_numpy())
    if cfg.users.train_fraction is not None:
        rng = np.random.default_rng([cfg.users.seed, 17])
        users = np.sort(rng.choice(users, max(1, int(round(cfg.users.train_fraction * len(users)))), replace=False))
    return users


def _stage2_rows(cfg: AllmrecConfig, n: int) -> np.ndarray:
    """Rows of the stage-1 users that stage 2 trains on: ``users.train`` of them (seeded), or all."""
    if cfg.users.train is None or cfg.users.train >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng([cfg.users.seed, 19]).choice(n, cfg.users.train, replace=False))


def _log(folder: Path, rec: dict) -> None:
    with open(folder / "train_log.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _text_side(cfg: AllmrecConfig, cf: CFSide, device: str, folder: Path):
    from llmkt.profiles.embed import SentenceTransformerEncoder

    def encoder():
        return SentenceTransformerEncoder(cfg.text_encoder.model, prefix=None, normalize=False, device=device)

    if cfg.text_encoder.finetune:
        tuned = TunedText(encoder().model, cf.titles, cfg.text_encoder.max_length)
        return tuned, tuned, tuned.dim
    cache = folder / "title_vectors.npy"
    if cache.exists():  # the encoder is not even loaded when its vectors are stored
        table = np.load(cache, allow_pickle=False)
    else:
        vecs = encoder().encode([str(t) for t in cf.titles[1:]])
        table = np.vstack([np.zeros((1, vecs.shape[1]), np.float32), vecs])
        np.save(cache, table, allow_pickle=False)
    frozen = FrozenText(table)
    return frozen, None, frozen.dim


def _cf_dim(cf: CFSide) -> int:
    return int(cf.model.item_embeddings().shape[1])


def _prepare(cfg: AllmrecConfig, command: str) -> tuple[Path, str]:
    folder = cfg.job_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ("config.yaml" if command == "train" else f"config.{command}.yaml")).write_text(dump_config(cfg))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    return folder, _device(cfg)


def _source(cfg: AllmrecConfig, cf: CFSide, use_cf: bool = True) -> PromptSource:
    return PromptSource(cf.titles, default_template(cfg.prompt.domain), cfg.prompt.n_history, use_cf,
                        cfg.prompt.max_title_words)


def _stage1(cfg: AllmrecConfig, cf: CFSide, device: str, folder: Path, data) -> ItemTextAlignment:
    text_fn, tuned, text_dim = _text_side(cfg, cf, device, folder)
    torch.manual_seed(cfg.seed)
    align = ItemTextAlignment(_cf_dim(cf), text_dim, cfg.stage1.latent, text_encoder=tuned).to(device)
    done = folder / "stage1.pt"
    if done.exists():
        align.load_state_dict(load_checkpoint(done, "allmrec stage 1")["align"])
        return align
    s = cfg.stage1
    hist = fit_stage1(align, cf.model, text_fn, data, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr,
                      alpha=s.alpha, beta=s.beta, seed=cfg.seed, folder=folder, progress=cfg.progress,
                      log=lambda r: _log(folder, {"stage": 1, **r}))
    save_checkpoint({"align": align.state_dict(), "history": hist}, done)
    return align


@dataclass
class TrainResult:
    folder: Path
    stage1: list[dict]
    stage2: list[dict]
    hashes: dict[str, str]


def train(config: AllmrecConfig | str | Path | dict, overrides: list[str] | None = None) -> TrainResult:
    """Stage 1 then stage 2; resumes from the job folder's checkpoints."""
    cfg = load_allmrec_config(config, overrides)
    cf = load_cf(cfg.cf_run)
    probe_llm(cfg.llm.model)
    folder, device = _prepare(cfg, "train")
    cf.model.to(device)
    cf_hash = state_hash(cf.model)
    users = _train_users(cfg, cf)
    data = stage1_data(cf.split.train, cf.dataset.n_users, cf.dataset.n_items, cf.model.max_len, users)
    if len(data.uid) == 0:
        raise DataError("allmrec: no training user has two or more training items; nothing to align on.")
    align = _stage1(cfg, cf, device, folder, data)
    latents = align.item_latents(cf.model).to(device)
    llm, tok = load_llm(cfg, device)
    slm = SoftPromptLM(llm, tok, _cf_dim(cf), cfg.stage1.latent, chat=cfg.llm.chat).to(device)
    llm_hash = state_hash(slm.llm)
    done = folder / "stage2.pt"
    s2_hist: list[dict] = []
    if done.exists():
        s2_hist = list(load_checkpoint(done, "allmrec stage 2")["history"])
    else:
        s = cfg.stage2
        s2_data = data.subset(_stage2_rows(cfg, len(data.uid)))
        s2_hist = fit_stage2(slm, cf.model, latents, s2_data, _source(cfg, cf), epochs=s.epochs,
                             batch_size=s.batch_size, lr=s.lr, n_candidates=cfg.candidates.n, seed=cfg.seed,
                             folder=folder, save_every=s.save_every, progress=cfg.progress,
                             log=lambda r: _log(folder, {"stage": 2, **r}))
        save_checkpoint({"projections": slm.trainable_state(), "history": s2_hist}, done)
    hashes = {"cf_model": cf_hash, "cf_model_after": state_hash(cf.model), "llm": llm_hash,
              "llm_after": state_hash(slm.llm)}
    if hashes["cf_model"] != hashes["cf_model_after"] or hashes["llm"] != hashes["llm_after"]:
        raise RuntimeError(f"allmrec: a frozen model changed during training ({hashes}); this is a bug.")
    s1_hist = list(load_checkpoint(folder / "stage1.pt", "allmrec stage 1")["history"])
    (folder / "train_summary.json").write_text(json.dumps(
        {"users_stage1": int(len(data.uid)), "stage1": s1_hist, "stage2": s2_hist, "hashes": hashes,
         "llm": cfg.llm.model, "device": device}, indent=1))
    return TrainResult(folder, s1_hist, s2_hist, hashes)


# -- evaluation ------------------------------------------------------------------------------------------------------
def _check_candidates(c: CandidateSets, cf: CFSide, stage: str, path: Path) -> None:
    """Stored sets must fit the dataset and stage: each positive is the user's target, no negative is one of the
    user's interactions."""
    targets = cf.split.targets(stage).drop_duplicates(C.UID, keep="first").set_index(C.UID)[C.IID]
    everything = seen_items(cf.dataset.interactions, cf.dataset.n_users)
    for r, (u, p) in enumerate(zip(c.uid, c.positive)):
        if targets.get(int(u)) != int(p):
            raise DataError(f"allmrec.candidates: {path} line {r + 2}: the positive is not user "
                            f"{cf.dataset.user_map.to_external([u])[0]}'s {stage} target; the file was drawn for "
                            "another stage or split.")
        negs = c.items[r][c.items[r] != p]
        if np.isin(negs, everything[u]).any():
            raise DataError(f"allmrec.candidates: {path} line {r + 2}: a negative is an item the user interacted "
                            "with.")


def candidate_sets(cfg: AllmrecConfig, cf: CFSide, folder: Path) -> CandidateSets:
    """The stored candidate sets of the job: drawn once (seeded), then read back by every later call whose
    settings match (``candidates.json``); a change of stage, seed, size or sample is refused, not silently mixed."""
    path = Path(cfg.candidates.file) if cfg.candidates.file else folder / "candidates.csv"
    meta_path = path.with_suffix(".json")
    stage = cfg.users.stage
    meta = {"dataset": cf.dataset.name, "stage": stage, "n": cfg.candidates.n, "seed": cfg.candidates.seed,
            "users_eval": cfg.users.eval, "users_seed": cfg.users.seed,
            "max_title_words": cfg.prompt.max_title_words}
    if path.exists():
        c = CandidateSets.load(path, cf.dataset.user_map, cf.dataset.item_map)
        if not cfg.candidates.file:
            stored = json.loads(meta_path.read_text()) if meta_path.exists() else {}
            diff = {k: (stored.get(k), v) for k, v in meta.items() if stored.get(k) != v}
            if diff:
                raise ConfigError(f"allmrec.candidates: {path} was drawn with other settings "
                                  f"({', '.join(f'{k}: stored {a!r}, config {b!r}' for k, (a, b) in diff.items())}); "
                                  "use another `dir` (or `name`) for the new settings, or delete the file to draw "
                                  "again.")
        if c.n_candidates != cfg.candidates.n:
            raise ConfigError(f"allmrec.candidates: {path} holds {c.n_candidates} candidates per user but "
                              f"candidates.n is {cfg.candidates.n}; set n to match.")
        _check_candidates(c, cf, stage, path)
        return c
    if cfg.candidates.file:
        raise DataError(f"allmrec.candidates.file: {path} does not exist.")
    # negatives avoid every interaction of the user (history and later targets alike)
    banned = seen_items(cf.dataset.interactions, cf.dataset.n_users)
    targets = cf.split.targets(stage).drop_duplicates(C.UID, keep="first")
    if cfg.users.eval is not None and cfg.users.eval < len(targets):
        rng = np.random.default_rng([cfg.users.seed, 29])
        targets = targets.iloc[np.sort(rng.choice(len(targets), cfg.users.eval, replace=False))]
    c = sample_candidates(banned, targets[[C.UID, C.IID]], cf.dataset.n_items, n_candidates=cfg.candidates.n,
                          seed=cfg.candidates.seed, stream=0, titles=_source(cfg, cf).normalised_titles())
    c.save(path, cf.dataset.user_map, cf.dataset.item_map)
    meta_path.write_text(json.dumps(meta, indent=1))
    return c


def _load_trained(cfg: AllmrecConfig, cf: CFSide, folder: Path, device: str):
    """``(item latents, SoftPromptLM, tokenizer)`` of a trained job (the text side is not needed at inference)."""
    align = ItemTextAlignment(_cf_dim(cf), 1, cfg.stage1.latent).to(device)
    state = load_checkpoint(folder / "stage1.pt", "allmrec stage 1")["align"]
    align.item.load_state_dict({k[len("item."):]: v for k, v in state.items() if k.startswith("item.")})
    latents = align.item_latents(cf.model)
    llm, tok = load_llm(cfg, device)
    slm = SoftPromptLM(llm, tok, _cf_dim(cf), cfg.stage1.latent, chat=cfg.llm.chat).to(device)
    slm.load_trainable_state(load_checkpoint(folder / "stage2.pt", "allmrec stage 2")["projections"])
    return latents, slm, tok


def _answers_key(cfg: AllmrecConfig, folder: Path, label: str) -> str:
    """What an answer depends on: the trained projections, the LLM, the prompt, the candidate file."""
    import hashlib

    h = hashlib.sha256()
    for f in ("stage1.pt", "stage2.pt", "candidates.csv"):
        p = folder / f
        h.update(p.read_bytes() if p.exists() else b"-")
    h.update(json.dumps([label, cfg.llm.model_dump(), cfg.prompt.model_dump(), cfg.candidates.file]).encode())
    return h.hexdigest()[:12]


def _answers_file(folder: Path, label: str, key: str) -> tuple[Path, dict[int, str]]:
    """``answers_<label>_<key>.jsonl``: answers of one trained state, prompt and candidate file (resumable)."""
    path = folder / f"answers_{label}_{key}.jsonl"
    done: dict[int, str] = {}
    if path.exists():
        for ln in path.read_text().splitlines():
            if ln.strip():
                try:
                    rec = json.loads(ln)
                    done[int(rec["uid"])] = rec["answer"]
                except (ValueError, KeyError):
                    continue  # a line cut by a crash: that answer is generated again
    return path, done


def _append(path: Path, new: dict[int, str]) -> None:
    with open(path, "a") as f:
        for u, a in new.items():
            f.write(json.dumps({"uid": u, "answer": a}) + "\n")


def _score_run(model, seqs: np.ndarray, cands: CandidateSets, batch: int = 256) -> tuple[np.ndarray, float]:
    out = np.empty(cands.items.shape, np.float64)
    t0 = time.perf_counter()
    with torch.no_grad():
        for s in range(0, len(cands), batch):
            rows = slice(s, s + batch)
            dev = model_device(model)
            sc = model.score({"seq": torch.as_tensor(seqs[cands.uid[rows]], device=dev),
                              "uid": torch.as_tensor(cands.uid[rows], device=dev)})
            out[rows] = np.take_along_axis(sc.cpu().numpy(), cands.items[rows], 1)
    return out, time.perf_counter() - t0


def evaluate(config: AllmrecConfig | str | Path | dict, overrides: list[str] | None = None) -> dict:
    """Hit@1 on the stored candidate sets: the frozen CF model, other llmkt runs, A-LLMRec, the LLM-only ablation;
    overall and on cold/warm items and cold users. Writes ``results.json``, ``per_user.csv``, ``efficiency.json``."""
    from llmkt.experiments.evaluate import load_run

    cfg = load_allmrec_config(config, overrides)
    cf = load_cf(cfg.cf_run)
    folder, device = _prepare(cfg, "evaluate")
    if not (folder / "stage2.pt").exists():
        raise DataError(f"allmrec evaluate: {folder} has no stage2.pt; run `llmkt allmrec train` with this config "
                        "first.")
    cf.model.to(device)
    cands = candidate_sets(cfg, cf, folder)
    stage = cfg.users.stage
    seqs = padded_sequences(cf.split.history(stage), cf.dataset.n_users, cf.model.max_len)
    ext_pos = cf.dataset.item_map.to_external(cands.positive)
    per = pd.DataFrame({"user_id": cf.dataset.user_map.to_external(cands.uid), "positive": ext_pos})
    results: dict[str, Any] = {"n_users": len(cands), "n_candidates": cands.n_candidates, "stage": stage,
                               "models": {}}
    eff: dict[str, Any] = {}

    scores, secs = _score_run(cf.model, seqs, cands)
    r = hit_at_1_of_scores(scores, cands.items, cands.positive)
    results["models"]["cf:" + cf.cfg.model.name] = r.as_dict()
    per["cf:" + cf.cfg.model.name] = r.per_user
    eff["cf_score_seconds_per_user"] = secs / max(1, len(cands))
    for other in cfg.evaluation.other_runs:
        ocfg, ods, osplit, omodel = load_run(other)
        omodel.to(device)
        same = (ods.name == cf.dataset.name and len(osplit.test) == len(cf.split.test)
                and np.array_equal(ods.item_map.external_ids, cf.dataset.item_map.external_ids)
                and np.array_equal(ods.user_map.external_ids, cf.dataset.user_map.external_ids)
                and np.array_equal(osplit.test[C.IID].to_numpy(), cf.split.test[C.IID].to_numpy()))
        if not same:
            raise ConfigError(f"allmrec.evaluation.other_runs: {other} is on {ods.name!r} with another split; the "
                              "candidate sets are only comparable on the same dataset and split.")
        oseq = padded_sequences(osplit.history(stage), ods.n_users, omodel.max_len or cf.model.max_len)
        osc, _ = _score_run(omodel, oseq, cands)
        label = f"run:{Path(other).name}"
        ro = hit_at_1_of_scores(osc, cands.items, cands.positive)
        results["models"][label] = ro.as_dict()
        per[label] = ro.per_user

    latents, slm, tok = _load_trained(cfg, cf, folder, device)
    cand_titles = [_source(cfg, cf).candidate_titles(row) for row in cands.items]
    pos_idx = [int(np.flatnonzero(row == p)[0]) for row, p in zip(cands.items, cands.positive)]
    variants = [("allmrec", True)] + ([("llm_only", False)] if cfg.evaluation.llm_only else [])
    end = (tok.eos_token,) if tok.eos_token else ()
    for label, use_cf in variants:
        path, done = _answers_file(folder, label, _answers_key(cfg, folder, label))
        n_before = len(done)
        answers, secs = generate_answers(slm, cf.model, latents, seqs, cands, _source(cfg, cf, use_cf),
                                         batch_size=cfg.evaluation.batch_size,
                                         max_new_tokens=cfg.prompt.max_new_tokens, progress=cfg.progress,
                                         done=done, on_batch=lambda new, p=path: _append(p, new))
        r = hit_at_1(answers, cand_titles, pos_idx, end)
        results["models"][label] = r.as_dict()
        per[label] = r.per_user
        per[f"{label}_answer"] = answers
        if len(cands) > n_before:
            eff[f"{label}_generate_seconds_per_user"] = secs / (len(cands) - n_before)
    # slices: cold/warm positives by training popularity, cold users by history length
    item_pop = np.bincount(cf.split.train[C.IID].to_numpy(), minlength=cf.dataset.n_items + 1)
    cut = float(np.quantile(item_pop[1:], cfg.evaluation.cold_item_quantile))
    per["positive_train_count"] = item_pop[cands.positive]
    per["cold_item"] = per["positive_train_count"] <= cut
    n_hist = np.bincount(cf.split.history(stage)[C.UID].to_numpy(), minlength=cf.dataset.n_users + 1)
    per["history_len"] = n_hist[cands.uid]
    per["cold_user"] = per["history_len"] <= cfg.evaluation.cold_user_max
    labels = list(results["models"])
    results["slices"] = {
        name: {"n": int(mask.sum()), **{m: float(per.loc[mask, m].mean()) if mask.any() else None for m in labels}}
        for name, mask in (("cold_items", per["cold_item"]), ("warm_items", ~per["cold_item"]),
                           ("cold_users", per["cold_user"]), ("warm_users", ~per["cold_user"]))}
    results["slices_rule"] = {"cold_item_max_train_count": cut, "cold_user_max_history": cfg.evaluation.cold_user_max}
    summary = folder / "train_summary.json"
    if summary.exists():
        tr = json.loads(summary.read_text())
        eff["stage1_seconds_per_epoch"] = float(np.mean([h["seconds"] for h in tr["stage1"]])) if tr["stage1"] else None
        eff["stage2_seconds_per_epoch"] = float(np.mean([h["seconds"] for h in tr["stage2"]])) if tr["stage2"] else None
        eff["stage2_users"] = tr["stage2"][0]["examples"] if tr["stage2"] else None
    eff["device"] = device
    results["efficiency"] = eff
    per.to_csv(folder / "per_user.csv", index=False)
    (folder / "results.json").write_text(json.dumps(results, indent=1))
    (folder / "efficiency.json").write_text(json.dumps(eff, indent=1))
    return results


# -- language generation ---------------------------------------------------------------------------------------------
def generate(config: AllmrecConfig | str | Path | dict, overrides: list[str] | None = None) -> pd.DataFrame:
    """The paper's language-generation task: the LLM describes a user's taste from the soft prompt (user token and
    history items with their embeddings). Writes ``generations.csv``."""
    cfg = load_allmrec_config(config, overrides)
    cf = load_cf(cfg.cf_run)
    folder, device = _prepare(cfg, "generate")
    if not (folder / "stage2.pt").exists():
        raise DataError(f"allmrec generate: {folder} has no stage2.pt; run `llmkt allmrec train` first.")
    cf.model.to(device)
    latents, slm, _ = _load_trained(cfg, cf, folder, device)
    stage = cfg.users.stage
    seqs = padded_sequences(cf.split.history(stage), cf.dataset.n_users, cf.model.max_len)
    users = np.unique(cf.split.targets(stage)[C.UID].to_numpy())
    rng = np.random.default_rng([cfg.users.seed, 31])
    users = np.sort(rng.choice(users, min(cfg.generate.users, len(users)), replace=False))
    source = _source(cfg, cf)
    rows = []
    for s in range(0, len(users), cfg.evaluation.batch_size):
        batch = users[s:s + cfg.evaluation.batch_size]
        exs, shown_of = [], []
        for j, u in enumerate(batch):
            hist = [int(i) for i in seqs[u] if i > 0][-cfg.prompt.n_history:]
            shown = source.candidate_titles(np.asarray(hist))
            shown_of.append(shown)
            items = ", ".join(f'"{t}" {MARKER}' for t in shown)
            text = (f"This user has interacted with these items in this order: {items}. Based on this sequence, "
                    f"generate user representation token: {MARKER}. {cfg.generate.question}")
            exs.append(PromptExample(text, [Slot("item", i) for i in hist] + [Slot("user", j)]))
        with torch.no_grad():
            uv = cf.model.user_representation({"seq": torch.as_tensor(seqs[batch], device=device)})
        out = slm.generate(exs, uv, latents, max_new_tokens=cfg.generate.max_new_tokens)
        for u, shown, a in zip(batch, shown_of, out):
            rows.append({"user_id": cf.dataset.user_map.to_external([u])[0], "history": " | ".join(shown),
                         "generation": a})
    frame = pd.DataFrame(rows)
    frame.to_csv(folder / "generations.csv", index=False)
    return frame
