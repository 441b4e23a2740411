"""Config -> the inputs of a run: the dataset, its split, and knowledge vectors (a file or a profile store).

This is the one place where a ``data:``/``split:`` section or a ``VectorsConfig`` becomes objects; the layers below
(``data``, ``transfer``, ``profiles``, ``baselines``) take those objects.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from llmkt.config import RunConfig
from llmkt.data import Dataset, Split, given_split, load_raw, make_split, preprocess
from llmkt.data import columns as C
from llmkt.data.loaders import read_table
from llmkt.errors import DataError, LLMKTError
from llmkt.data.vectors import ProfileVectors, check_dataset


def load_dataset(cfg: Any) -> Dataset:
    """The dataset of a run config or a profile job (both have a ``data`` section), preprocessed."""
    d = cfg.data
    raw = load_raw(d.name, d.data_dir, path=d.path, download=d.download)
    inter = preprocess(raw.interactions, min_rating=d.min_rating, duplicates=d.duplicates,
                       min_user_interactions=d.min_user_interactions, min_item_interactions=d.min_item_interactions)
    return Dataset.from_frames(inter, raw.items, raw.users, name=raw.name)


def split_dataset(cfg: Any, ds: Dataset) -> Split:
    """The split of a run config or profile job; a run's cold-start protocol (``evaluation.slices.cold_items``)
    is applied here, so training, evaluation and ``llmkt evaluate`` see the same data."""
    if cfg.split.kind == "given":
        split = given_split_of(cfg.split, ds, dataset_folder(cfg))
    else:
        split = make_split(ds, cfg.split.kind, **cfg.split.model_dump(exclude={"kind"}))
    if isinstance(cfg, RunConfig) and cfg.evaluation.slices is not None and cfg.evaluation.slices.cold_items:
        from llmkt.evaluation.slices import cold_items_split

        c = cfg.evaluation.slices.cold_items
        split, cold = cold_items_split(split, c.share, c.keep, c.seed)
        split.params["cold_items"]["item_ids"] = ds.item_map.to_external(cold).tolist()
    return split


def dataset_folder(cfg: Any) -> Path:
    """The folder a run's dataset is read from (``data.path``, else ``<data home>/<name>``)."""
    from llmkt.data.loaders import default_data_dir

    d = cfg.data
    if d.path:
        return Path(d.path).expanduser()
    return (Path(d.data_dir).expanduser() if d.data_dir else default_data_dir()) / d.name


def given_split_of(s: Any, ds: Dataset, folder: Path | None = None) -> Split:
    """``split: {kind: given, train: PATH, valid: PATH, test: PATH}``: the files read (tab-separated for .tsv),
    validated against the dataset, their SHA-256 recorded in the split's params. ``{data}`` in a path is the
    dataset's folder."""
    parts, sources, digests = {}, {}, {}
    for name in ("train", "valid", "test"):
        raw = getattr(s, name)
        if "{data}" in raw and folder is not None:
            raw = raw.replace("{data}", str(folder))
        path = Path(raw).expanduser()
        if not path.is_file():
            raise DataError(f"split.{name}: {path} does not exist.")
        parts[name] = read_table(path, f"split {name}", required=(C.USER, C.ITEM),
                                 expected="a header user_id,item_id[,timestamp] and one interaction per line",
                                 sep="\t" if path.suffix in (".tsv", ".tab") else ",")
        sources[name] = str(path)
        digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    split = given_split(ds, parts, sources)
    split.params["sha256"] = digests
    return split


_CACHE: dict[str, ProfileVectors] = {}
_CACHE_SIZE = 8


def _file_state(path: Path) -> list[Any]:
    return [[str(p), p.stat().st_mtime_ns, p.stat().st_size] for p in (path, Path(str(path) + "-wal")) if p.exists()]


def _split_fingerprint(split: Split | None) -> str:
    if split is None:
        return "-"
    h = hashlib.sha256(json.dumps([split.dataset.name, split.kind, split.params], sort_keys=True,
                                  default=str).encode())
    for col in (C.UID, C.IID, C.TIMESTAMP):
        h.update(split.train[col].to_numpy().tobytes())
    return h.hexdigest()


def _cache_key(v: Any, split: Split | None, data_dir: str | None) -> str | None:
    """Sources that did not change since they were read give the same table: a key over the source's spec and
    files' state and the split, or None when the source cannot be fingerprinted."""
    try:
        if v.profiles is not None:
            from llmkt.config.profiles import load_profiles_config

            job = load_profiles_config(v.profiles, ([f"data.data_dir={data_dir}"] if data_dir else []) +
                                       list(v.profiles_set))
            files = _file_state(job.store_path())
        elif v.item_text is not None:
            files = []  # the dataset's metadata: part of the split's fingerprint
        else:
            files = _file_state(Path(v.path)) + (_file_state(Path(v.ids)) if v.ids else [])
    except (OSError, LLMKTError):
        return None
    spec = v.model_dump(mode="json", exclude={"control", "control_seed", "allow_other_dataset"})
    return json.dumps([spec, data_dir, files, _split_fingerprint(split)], sort_keys=True, default=str)


def read_vectors(v: Any, split: Split | None = None, data_dir: str | None = None,
                 where: str = "transfer.vectors") -> ProfileVectors:
    """The table a ``VectorsConfig`` names (a file, or a profile store leak-checked against ``split``), refused when
    its metadata names another dataset than the split's, with its control applied. A source read before in this
    process, unchanged and for the same split, is not read again (a study reads one source for many trials)."""
    key = _cache_key(v, split, data_dir)
    if key is not None and key in _CACHE:
        vectors = _CACHE[key]
    else:
        vectors = _read_source(v, split, data_dir)
        if key is not None:
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[key] = vectors
    if split is not None:
        check_dataset(vectors, split.dataset.name, v.allow_other_dataset, where)
        if v.min_coverage > 0:
            _check_coverage(vectors, split, v.min_coverage, where)
    return vectors.control(v.control, v.control_seed)


def _check_coverage(vectors: ProfileVectors, split: Split, minimum: float, where: str) -> None:
    side = "item" if vectors.meta.get("entity") == "item" else "user"
    _, mask = vectors.aligned(split.dataset, side)
    have, n = int(mask[1:].sum()), len(mask) - 1
    if have < minimum * n:
        raise DataError(f"{where}: {have} of the {n} {side}s of {split.dataset.name} ({have / n:.1%}) have a vector, "
                        f"below {where}.min_coverage = {minimum:g}. Complete the profile job (`llmkt profiles "
                        "generate` and `embed` resume where they stopped) or lower min_coverage.")


def _read_source(v: Any, split: Split | None, data_dir: str | None) -> ProfileVectors:
    if v.profiles is not None:
        from llmkt.experiments.profiles import export_vectors

        # every profile is checked against the split of the run that uses it (LeakError otherwise)
        overrides = ([f"data.data_dir={data_dir}"] if data_dir else []) + list(v.profiles_set)
        vectors = export_vectors(v.profiles, overrides, check_split=split, encoder_id=v.encoder)
    elif v.item_text is not None:
        from llmkt.profiles.items import item_text_vectors

        if split is None:
            raise DataError("vectors.item_text embeds the run's items: it needs the run's dataset.")
        vectors = item_text_vectors(split.dataset, v.item_text)
        vectors.meta["entity"] = "item"
    else:
        vectors = ProfileVectors.load(v.path, v.ids)
    return vectors


__all__ = ["RunConfig", "load_dataset", "read_vectors", "split_dataset"]
