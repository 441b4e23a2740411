"""Item knowledge without an LLM: a text embedding of each item's metadata (title, year, genres), cached.

KAR's item factual knowledge comes from an LLM; when no item profiles exist, this embedding of the catalogue's
own metadata stands in (results must say so).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from llmkt.data import columns as C
from llmkt.data.dataset import Dataset
from llmkt.errors import DataError
from llmkt.profiles.weights import cache_dir
from llmkt.data.vectors import ProfileVectors


def item_texts(ds: Dataset) -> tuple[np.ndarray, list[str]]:
    """External item ids and one text per item: ``"Title (Year). Genres: A, B."``. Items without a title (empty or
    missing: amazon-beauty has 7) are left out, so they get no vector rather than the embedding of an empty text."""
    if ds.items is None or "title" not in ds.items.columns:
        raise DataError(f"dataset {ds.name!r} has no item titles; give item knowledge vectors (path) instead.")
    keep, out = [], []
    for row in ds.items.to_dict("records"):
        title = row["title"]
        keep.append(isinstance(title, str) and bool(title.strip()))
        if not keep[-1]:
            continue
        text = title
        year = row.get("year")
        if year is not None and str(year) not in ("<NA>", "nan", "None"):
            text += f" ({year})"
        genres = row.get("genres")
        if isinstance(genres, str) and genres:
            text += ". Genres: " + genres.replace("|", ", ")
        out.append(text + ".")
    if not out:
        raise DataError(f"dataset {ds.name!r}: every item title is empty; give item knowledge vectors (path) instead.")
    return ds.items[C.ITEM].to_numpy()[np.asarray(keep)], out


def item_text_vectors(ds: Dataset, encoder: str = "all-minilm-l6-v2", batch_size: int = 64) -> ProfileVectors:
    """Embed the item texts with a sentence-transformers model; cached by dataset, encoder and text hash."""
    ids, texts = item_texts(ds)
    digest = hashlib.sha256(json.dumps([encoder, texts]).encode()).hexdigest()[:16]
    path = cache_dir().parent / "item_text" / f"{ds.name}-{Path(encoder).name}-{digest}.npz"
    if path.exists():
        return ProfileVectors.load(path)
    from llmkt.profiles.embed import SentenceTransformerEncoder

    enc = SentenceTransformerEncoder(encoder, batch_size=batch_size, normalize=True)
    pv = ProfileVectors(ids, enc.encode(texts), {"source": "item metadata text (title, year, genres)",
                                                "encoder": enc.encoder_id, "dataset": ds.name})
    path.parent.mkdir(parents=True, exist_ok=True)
    pv.save(path)
    return pv
