"""Profile texts -> vectors (sentence-transformers or an OpenAI-compatible embeddings API), stored with the
encoder id, and exported to the profile-vector table that ``transfer.vectors`` reads.

E5 models expect a prefix: ``prefix: auto`` uses ``"query: "`` for models whose name contains ``e5`` (E5's advice
for symmetric similarity tasks) and nothing otherwise; set ``"passage: "`` or any text explicitly.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llmkt.errors import ConfigError, DataError
from llmkt.profiles.config import EmbeddingConfig, ProfilesConfig, load_profiles_config
from llmkt.profiles.history import check_leak_free
from llmkt.profiles.store import ProfileRecord, ProfileStore
from llmkt.transfer.vectors import ProfileVectors


def _prefix(cfg: EmbeddingConfig) -> str:
    if cfg.prefix == "auto":
        return "query: " if "e5" in cfg.model.lower() else ""
    return cfg.prefix or ""


class Encoder:
    encoder_id: str = "unknown"

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class SentenceTransformerEncoder(Encoder):
    def __init__(self, cfg: EmbeddingConfig):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ConfigError("embedding.kind=sentence_transformers needs sentence-transformers: "
                              "pip install 'llmkt[embed]'.") from e
        from llmkt.profiles.weights import REGISTRY, fetch_weights

        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        source = str(fetch_weights(cfg.model)) if cfg.model in REGISTRY else cfg.model
        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        self.model = SentenceTransformer(source, device=device)
        self.prefix = _prefix(cfg)
        self.normalize = cfg.normalize
        self.batch_size = cfg.batch_size
        self.encoder_id = encoder_id_of(cfg)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.encode([self.prefix + t for t in texts], batch_size=self.batch_size,
                                            normalize_embeddings=self.normalize, show_progress_bar=False,
                                            convert_to_numpy=True), dtype=np.float32)


class OpenAIEncoder(Encoder):
    def __init__(self, cfg: EmbeddingConfig):
        from llmkt.profiles.backends.openai_api import OpenAIClient

        self.client = OpenAIClient(cfg.base_url, api_key_env=cfg.api_key_env)
        self.model = cfg.model
        self.prefix = _prefix(cfg)
        self.normalize = cfg.normalize
        self.encoder_id = encoder_id_of(cfg)

    def encode(self, texts: list[str]) -> np.ndarray:
        from llmkt.profiles.backends.openai_api import parse_embeddings

        async def go() -> list[list[float]]:
            try:
                return await self.client.post("embeddings", {"model": self.model,
                                                             "input": [self.prefix + t for t in texts]},
                                              parse_embeddings)
            finally:
                await self.client.aclose()

        rows = asyncio.run(go())
        if len(rows) != len(texts) or len({len(r) for r in rows}) != 1:
            raise DataError(f"embeddings from {self.client.base_url}: {len(rows)} vectors of widths "
                            f"{sorted({len(r) for r in rows})[:3]} for {len(texts)} texts; check embedding.model.")
        x = np.asarray(rows, dtype=np.float32)
        if self.normalize:
            x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return x


def make_encoder(cfg: EmbeddingConfig) -> Encoder:
    return SentenceTransformerEncoder(cfg) if cfg.kind == "sentence_transformers" else OpenAIEncoder(cfg)


def encoder_id_of(cfg: EmbeddingConfig) -> str:
    norm = "norm" if cfg.normalize else "raw"
    prefix = _prefix(cfg).strip() or "-"
    return f"{'st' if cfg.kind == 'sentence_transformers' else 'openai'}:{Path(cfg.model).name}:{prefix}:{norm}"


def job_records(cfg: ProfilesConfig, store: ProfileStore) -> tuple[Any, list[ProfileRecord]]:
    """The split and this job's profile of every user in it (the current training history's profile), in internal
    user order."""
    from llmkt.profiles.generate import Job, job_histories

    split, histories = job_histories(cfg)
    job = Job.of(cfg, split)
    keys = [job.key(h) for h in histories]
    by_key = {r.key: r for r in store.records(keys=keys)}  # the store's order is creation time (retries last)
    return split, [by_key[k] for k in keys if k in by_key]


@dataclass
class EmbedReport:
    encoder_id: str
    profiles: int
    embedded: int
    seconds: float
    dim: int


def embed_profiles(config: ProfilesConfig | str | Path | dict | None = None,
                   overrides: list[str] | None = None, *, encoder: Encoder | None = None) -> EmbedReport:
    """Embed this job's profiles that have no vector for the encoder yet; store the vectors."""
    cfg = load_profiles_config(config, overrides)
    with ProfileStore(cfg.store_path(), create=False) as store:
        _, recs = job_records(cfg, store)
        if not recs:
            raise DataError(f"profile store {cfg.store_path()}: no profiles for this job yet; run "
                            "`llmkt profiles generate` with the same config first.")
        t0 = time.perf_counter()
        enc = encoder or make_encoder(cfg.embedding)
        have = store.embeddings([r.key for r in recs], enc.encoder_id)
        todo = [r for r in recs if r.key not in have]
        dim = next(iter(have.values())).shape[0] if have else 0
        bs = max(1, cfg.embedding.batch_size * 4)
        with tqdm(total=len(todo), unit="profile", disable=not cfg.progress or not todo or not sys.stderr.isatty()
                  ) as bar:
            for i in range(0, len(todo), bs):
                chunk = todo[i:i + bs]
                x = enc.encode([r.text for r in chunk])
                store.add_embeddings([r.key for r in chunk], enc.encoder_id, x)
                dim = x.shape[1]
                bar.update(len(chunk))
        return EmbedReport(enc.encoder_id, len(recs), len(todo), time.perf_counter() - t0, dim)


def export_vectors(config: ProfilesConfig | str | Path | dict | None = None, overrides: list[str] | None = None,
                   *, out: str | Path | None = None, encoder_id: str | None = None,
                   check_split: Any = None) -> ProfileVectors:
    """This job's vectors as :class:`ProfileVectors` (and a .npz at ``out``).

    Every profile's history is checked against ``check_split`` (the split of the run that will use the vectors;
    default: the job's own split): a profile that saw a validation or test interaction raises ``LeakError``.
    """
    cfg = load_profiles_config(config, overrides)
    encoder_id = encoder_id or encoder_id_of(cfg.embedding)
    with ProfileStore(cfg.store_path(), create=False) as store:
        split, recs = job_records(cfg, store)
        if not recs:
            jobs = [(j["model_id"], j["prompt_hash"], j["profiles"]) for j in store.jobs()]
            raise DataError(f"profile store {cfg.store_path()}: no profiles for this job (model "
                            f"{cfg.backend.kind}, this prompt and these settings); the store holds (model, prompt "
                            f"hash, profiles): {jobs[:5]}. Use the config the profiles were generated with.")
        check_leak_free(((r.external_user, r.history_keys) for r in recs), check_split or split)
        vecs = store.embeddings([r.key for r in recs], encoder_id)
        if not vecs:
            known = [e[0] for e in store.encoders()]
            raise DataError(f"profile store {cfg.store_path()}: no vectors from encoder {encoder_id!r} for this job; "
                            f"run `llmkt profiles embed` first (encoders in the store: {known}).")
        kept = [r for r in recs if r.key in vecs]
        pv = ProfileVectors(np.array([r.external_user for r in kept]), np.stack([vecs[r.key] for r in kept]), {
            "source": f"profile store {cfg.store_path()}", "encoder": encoder_id, "model": kept[0].model_id,
            "prompt_hash": kept[0].prompt_hash, "settings_hash": kept[0].settings_hash, "dataset": kept[0].dataset,
            "split": kept[0].split, "profiles": len(kept), "reducer": "none"})
    if out is not None:
        pv.save(out)
    return pv
