"""Config -> the inputs of a run: the dataset, its split, and knowledge vectors (a file or a profile store).

This is the one place where a ``data:``/``split:`` section or a ``VectorsConfig`` becomes objects; the layers below
(``data``, ``transfer``, ``profiles``, ``baselines``) take those objects.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from llmkt.config import RunConfig
from llmkt.data import Dataset, Split, given_split, load_raw, make_split, preprocess
from llmkt.data import columns as C
from llmkt.data.loaders import read_table
from llmkt.errors import DataError
from llmkt.data.vectors import ProfileVectors, check_dataset


def load_dataset(cfg: Any) -> Dataset:
    """The dataset of a run config or a profile job (both have a ``data`` section), preprocessed."""
    d = cfg.data
    raw = load_raw(d.name, d.data_dir, path=d.path, download=d.download)
    inter = preprocess(raw.interactions, min_rating=d.min_rating, duplicates=d.duplicates,
                       min_user_interactions=d.min_user_interactions, min_item_interactions=d.min_item_interactions)
    return Dataset.from_frames(inter, raw.items, raw.users, name=raw.name)


def split_dataset(cfg: Any, ds: Dataset) -> Split:
    if cfg.split.kind == "given":
        return given_split_of(cfg.split, ds)
    params = cfg.split.model_dump(exclude={"kind"})
    return make_split(ds, cfg.split.kind, **params)


def given_split_of(s: Any, ds: Dataset) -> Split:
    """``split: {kind: given, train: PATH, valid: PATH, test: PATH}``: the files read (tab-separated for .tsv),
    validated against the dataset, their SHA-256 recorded in the split's params."""
    parts, sources, digests = {}, {}, {}
    for name in ("train", "valid", "test"):
        path = Path(getattr(s, name)).expanduser()
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


def read_vectors(v: Any, split: Split | None = None, data_dir: str | None = None,
                 where: str = "transfer.vectors") -> ProfileVectors:
    """The table a ``VectorsConfig`` names (a file, or a profile store leak-checked against ``split``), refused when
    its metadata names another dataset than the split's, with its control applied."""
    if v.profiles is not None:
        from llmkt.experiments.profiles import export_vectors

        # every profile is checked against the split of the run that uses it (LeakError otherwise)
        overrides = ([f"data.data_dir={data_dir}"] if data_dir else []) + list(v.profiles_set)
        vectors = export_vectors(v.profiles, overrides, check_split=split, encoder_id=v.encoder)
    else:
        vectors = ProfileVectors.load(v.path, v.ids)
    if split is not None:
        check_dataset(vectors, split.dataset.name, v.allow_other_dataset, where)
    return vectors.control(v.control, v.control_seed)


__all__ = ["RunConfig", "load_dataset", "read_vectors", "split_dataset"]
