"""Studies: grids × vectors variants × seeds as Optuna trials, each trial one run folder.

``run_study(spec, workers=N)`` checks everything it can before any training (every cell's config, the vectors
sources, one transfer set-up per model and variant), creates or loads the Optuna study in its storage (SQLite in
the study folder by default, any SQLAlchemy URL or ``journal:PATH``), enqueues every cell that has no finished,
running or waiting trial, and runs worker processes that pop waiting trials until none is left. More
``llmkt study run SPEC --storage URL`` processes on other machines join the same study.

* A cell is (variant, grid point, seed). Base cells (variant ``none``: no transfer) exist once per (point of the
  non-transfer axes, seed) and are shared by every variant.
* A trial records a heartbeat; a running trial of a dead process on this host, or one without heartbeat for
  ``engine.grace_s``, is marked failed at the next start and its cell runs again (resuming from its ``last.pt``).
  A finished cell never runs again; a waiting trial is popped by exactly one worker (the storage's transaction).
* Trials look at validation only. :func:`finalize` chooses per (model group, variant) on the validation metric
  (the base among the candidates) and evaluates test for the chosen points only (``test.json``,
  ``test_per_user.parquet`` in their run folders, ``selection.json`` in the study folder).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from llmkt.config import RunConfig, set_path, validate_config
from llmkt.config.study import BASE, StudyConfig, VariantConfig, load_study_config
from llmkt.errors import ConfigError, DataError, LLMKTError

TRIALS = "trials"
ATTEMPTS = "attempts.log"


def _optuna():
    try:
        import optuna
    except ImportError as e:
        raise ConfigError("studies need Optuna: pip install 'llmkt[study]'.") from e
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# -- cells -------------------------------------------------------------------------------------------------------------
def _is_transfer_axis(axis: str) -> bool:
    return axis == "transfer" or axis.startswith("transfer.")


def is_bundle(value: Any) -> bool:
    """A grid value that sets several config paths at once: ``{label: neumf, set: {model: {...}, training.epochs:
    20}}``."""
    return isinstance(value, dict) and "set" in value and set(value) <= {"set", "label"} and \
        isinstance(value["set"], dict)


def _label(value: Any) -> str:
    if is_bundle(value):
        return str(value.get("label") or _label(value["set"]))
    if isinstance(value, dict):  # a section: {name: deepfm} -> deepfm, {name: sasrec, hidden: 64} -> sasrec,hidden=64
        rest = ",".join(f"{k}={_label(v)}" for k, v in value.items() if k != "name")
        return ",".join(p for p in (str(value["name"]) if "name" in value else "", rest) if p)
    return str(value)


@dataclass(frozen=True)
class Cell:
    """One run of a study: a vectors variant (``none`` = base), a grid point, a seed."""

    variant: str
    point: tuple[tuple[str, Any], ...]  # (axis, value) in grid order; base cells hold the non-transfer axes only
    seed: int

    @property
    def key(self) -> str:
        return json.dumps({"variant": self.variant, "point": [[a, v] for a, v in self.point], "seed": self.seed},
                          sort_keys=True, default=str)

    @property
    def id(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}-{self.id}"

    def values(self) -> dict[str, Any]:
        return dict(self.point)


def expand(study: StudyConfig) -> list[Cell]:
    """Every cell of the study, in a fixed order: base cells, then each variant's, seed by seed."""
    axes = list(study.grid)
    base_axes = [a for a in axes if not _is_transfer_axis(a)]
    combos = list(itertools.product(*(study.grid[a] for a in axes))) or [()]
    base_combos = list(itertools.product(*(study.grid[a] for a in base_axes))) or [()]
    cells = [] if BASE in searched_variants(study) else [
        Cell(BASE, tuple(zip(base_axes, c)), seed) for seed in study.seeds for c in base_combos]
    for variant in study.vectors:
        if variant in searched_variants(study):  # its points come from the search, round by round
            continue
        if uses_kar(study, variant):  # no auxiliary loss: the transfer axes do not apply
            cells += [Cell(variant, tuple(zip(base_axes, c)), seed) for seed in study.seeds for c in base_combos]
        else:
            cells += [Cell(variant, tuple(zip(axes, c)), seed) for seed in study.seeds for c in combos]
    return cells


# -- search: points proposed by TPE in rounds ------------------------------------------------------------------------
def search_axes(study: StudyConfig, variant: str) -> list[str]:
    """The search axes that apply to ``variant``: all for transfer variants, the non-transfer ones for the base
    and KAR variants."""
    if study.search is None:
        return []
    axes = list(study.search.space)
    if variant == BASE or uses_kar(study, variant):
        axes = [a for a in axes if not _is_transfer_axis(a)]
    return axes


def searched_variants(study: StudyConfig) -> list[str]:
    """Variants whose points the search proposes (the base only when a non-transfer axis is searched)."""
    return [v for v in (BASE, *study.vectors) if search_axes(study, v)]


def _group_points(study: StudyConfig) -> list[tuple[tuple[str, Any], ...]]:
    axes = list(study.grid)  # with search, the grid holds the group axes only
    return [tuple(zip(axes, c)) for c in itertools.product(*(study.grid[a] for a in axes))] or [()]


def search_keys(study: StudyConfig) -> list[str]:
    """One search per (model group point, searched variant)."""
    return [json.dumps({"variant": v, "group": [[a, x] for a, x in g]}, sort_keys=True, default=str)
            for v in searched_variants(study) for g in _group_points(study)]


def _search_cells(study: StudyConfig, key: str, points: list[dict[str, Any]]) -> list[Cell]:
    k = json.loads(key)
    group = tuple((a, x) for a, x in k["group"])
    return [Cell(k["variant"], group + tuple((a, p[a]) for a in search_axes(study, k["variant"])), seed)
            for p in points for seed in study.seeds]


def _stored_points(ostudy: Any) -> dict[str, list[dict[str, Any]]]:
    return dict(ostudy.user_attrs.get("llmkt_search") or {})


def all_cells(study: StudyConfig, ostudy: Any) -> list[Cell]:
    """The grid's cells and those of every point the search has proposed so far (stored in the study)."""
    cells = expand(study)
    if study.search is not None:
        stored = _stored_points(ostudy)
        for key in search_keys(study):
            cells += _search_cells(study, key, stored.get(key, []))
    return cells


def _probe_cells(study: StudyConfig) -> list[Cell]:
    """One cell per search at the space's first point (low ends, first choices): what ``check_study`` checks
    before any point is proposed."""
    first = {a: (r[0] if isinstance(r, list) else (int(r.low) if r.int else r.low))
             for a, r in (study.search.space.items() if study.search else [])}
    return [c for key in search_keys(study) for c in _search_cells(study, key, [first])[:1]]


def _distributions(study: StudyConfig, axes: list[str]) -> dict[str, Any]:
    D = _optuna().distributions
    out = {}
    for a in axes:
        r = study.search.space[a]
        if isinstance(r, list):  # choices travel as JSON text (sections and lists are no Optuna choices)
            out[a] = D.CategoricalDistribution([json.dumps(c, sort_keys=True) for c in r])
        elif r.int:
            out[a] = D.IntDistribution(int(r.low), int(r.high), log=r.log)
        else:
            out[a] = D.FloatDistribution(r.low, r.high, log=r.log)
    return out


def _encode(study: StudyConfig, point: dict[str, Any]) -> dict[str, Any]:
    return {a: json.dumps(v, sort_keys=True) if isinstance(study.search.space[a], list) else v
            for a, v in point.items()}


def _decode(study: StudyConfig, params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for a, v in params.items():
        r = study.search.space[a]
        if isinstance(r, list):
            out[a] = json.loads(v)
        elif r.int:
            out[a] = int(v)
        else:
            out[a] = float(f"{v:.6g}")  # stable, readable cell keys
    return out


def propose(h: "StudyHandle") -> int:
    """Propose the next round of points of every search whose previous round has finished (every seed of every
    point complete); store them in the study and add their cells to ``h``. Returns how many points are new.

    A round's proposal depends only on the finished points (TPE seeded per search and round), so two ``study run``
    processes proposing at once store the same points."""
    if h.config.search is None:
        return 0
    optuna = _optuna()
    TS = optuna.trial.TrialState
    sc = h.config.search
    values: dict[str, list[float]] = {}
    for t in h.optuna_study.get_trials(deepcopy=False, states=(TS.COMPLETE,)):
        values.setdefault(t.user_attrs.get("cell"), []).append(float(t.value))
    stored = _stored_points(h.optuna_study)
    new_points = 0
    for key in search_keys(h.config):
        points = list(stored.get(key, []))
        if len(points) >= sc.n_points:
            continue
        finished, pending = [], False
        for p in points:
            cells = _search_cells(h.config, key, [p])
            if all(c.id in values for c in cells):
                finished.append((p, float(np.mean([values[c.id][0] for c in cells]))))
            else:
                pending = True
        if pending:
            continue
        variant = json.loads(key)["variant"]
        dists = _distributions(h.config, search_axes(h.config, variant))
        seed = int(hashlib.sha256(f"{sc.seed}|{key}|{len(points)}".encode()).hexdigest()[:8], 16)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=sc.n_startup, constant_liar=True)
        mem = optuna.create_study(direction="maximize", sampler=sampler)
        for p, v in finished:
            mem.add_trial(optuna.trial.create_trial(params=_encode(h.config, p), distributions=dists, value=v))
        want = min(sc.per_round, sc.n_points - len(points))
        fresh: list[dict[str, Any]] = []
        for _ in range(50 * want):  # a repeated point (small discrete spaces) is asked again
            if len(fresh) == want:
                break
            t = mem.ask(dists)
            point = _decode(h.config, t.params)
            if point in points or point in fresh:
                mem.tell(t, state=TS.FAIL)
                continue
            fresh.append(point)
        if not fresh:
            continue
        stored[key] = points + fresh
        new_points += len(fresh)
    if new_points:
        h.optuna_study.set_user_attr("llmkt_search", stored)
        h.cells = all_cells(h.config, h.optuna_study)
    return new_points


def uses_kar(study: StudyConfig, variant: str) -> bool:
    """Whether ``variant`` (a control: its source's) feeds its vectors to KAR instead of transferring them."""
    if variant == BASE:
        return False
    var = study.vectors[variant]
    src = study.vectors[var.of] if var.of is not None else var
    return src.use == "kar"


def group_of(study: StudyConfig, cell: Cell) -> str:
    vals = cell.values()
    return " ".join(f"{_label(vals[a])}" for a in study.group_axes() if a in vals) or "all"


def point_of(study: StudyConfig, cell: Cell) -> str:
    """The tuned part of a cell's grid point (what the choice is over), as a label."""
    groups = set(study.group_axes())
    tuned = [(a, v) for a, v in cell.point if a not in groups]
    return " ".join(f"{a}={_label(v)}" for a, v in tuned) or "-"


def _vectors_section(study: StudyConfig, variant: str, seed: int) -> dict[str, Any]:
    var: VariantConfig = study.vectors[variant]
    src = study.vectors[var.of] if var.of is not None else var
    out: dict[str, Any] = {"allow_other_dataset": src.allow_other_dataset, "min_coverage": src.min_coverage}
    if src.path is not None:
        out.update(path=src.path, ids=src.ids)
    elif src.item_text is not None:
        out.update(item_text=src.item_text)
    else:
        out.update(profiles=src.profiles, profiles_set=list(src.profiles_set), encoder=src.encoder)
    if var.of is not None:
        out.update(control=var.control, control_seed=seed)
    return out


def cell_config(study: StudyConfig, cell: Cell, base_raw: dict[str, Any], trials_dir: Path) -> RunConfig:
    """The validated run config of ``cell``."""
    raw = copy.deepcopy(base_raw)
    kar = uses_kar(study, cell.variant)
    if cell.variant == BASE or kar:
        raw["transfer"] = None
    else:
        var = study.vectors[cell.variant]
        patch = var.transfer or (study.vectors[var.of].transfer if var.of is not None else {})
        raw["transfer"] = {**copy.deepcopy(study.transfer), **copy.deepcopy(patch),
                           "vectors": _vectors_section(study, cell.variant, cell.seed), "compare_base": False}
        item = raw["transfer"].get("item")
        if var.of is not None and isinstance(item, dict) and isinstance(item.get("vectors"), dict):
            # a control of a both-sides variant controls both sides' vectors, each with the cell's seed
            item["vectors"] = {**item["vectors"], "control": var.control, "control_seed": cell.seed}
    for axis, value in cell.point:
        if is_bundle(value):
            for path, v in value["set"].items():
                set_path(raw, str(path).split("."), copy.deepcopy(v), f"grid axis {axis!r}, {path!r}")
        else:
            set_path(raw, axis.split("."), copy.deepcopy(value), f"grid axis {axis!r}")
    if kar:
        var = study.vectors[cell.variant]
        src = study.vectors[var.of] if var.of is not None else var
        knowledge = _vectors_section(study, cell.variant, cell.seed)
        knowledge.pop("profiles_set", None) if knowledge.get("profiles") is None else None
        raw["model"] = {**copy.deepcopy(src.kar), "name": "kar", "backbone": raw.get("model"),
                        "user_knowledge": knowledge}
    set_path(raw, ["training", "seed"], cell.seed)
    set_path(raw, ["output", "dir"], str(trials_dir))
    set_path(raw, ["output", "name"], cell.name)
    set_path(raw, ["output", "save_checkpoints"], True)
    return validate_config(raw, f"study {study.name!r}, cell {cell.variant} {point_of(study, cell)} "
                                f"[{group_of(study, cell)}] seed {cell.seed}")


# -- storage ------------------------------------------------------------------------------------------------------------
def storage_url(study: StudyConfig, override: str | None = None) -> str:
    url = override or study.engine.storage
    if url:
        return url
    folder = study.folder()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def open_storage(url: str):
    optuna = _optuna()
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend

            path = Path(url[len("journal:"):])
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {"pool_pre_ping": True}
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        if url.startswith("sqlite"):
            _serialize_sqlite(storage.engine)
        return storage
    except Exception as e:  # noqa: BLE001 - SQLAlchemy raises many kinds; all mean "cannot use this storage"
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ConfigError(f"engine.storage {url!r}: cannot open this storage ({type(e).__name__}: {first}). Check "
                          "the URL, that the database server is reachable, and that its driver is installed "
                          "(e.g. psycopg2 for postgresql://).") from None


def _serialize_sqlite(engine: Any) -> None:
    """Make every SQLite transaction take the write lock at its start (``BEGIN IMMEDIATE``).

    Python's sqlite3 driver opens a transaction only at the first write, so Optuna's "read the trial, it is
    WAITING, set it RUNNING" runs its read outside any lock: two workers could both pop the same waiting trial and
    train one cell twice into one run folder (measured: 7-10 of 40 trials popped twice by 4 processes). With the
    lock taken first, the second worker reads RUNNING and moves on. PostgreSQL does this with Optuna's
    ``SELECT ... FOR UPDATE``; the journal storage orders its log. SQLAlchemy's documented recipe for pysqlite.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver issues no BEGIN of its own

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections made before the listeners (schema set-up) are not reused


def _spec_hash(study: StudyConfig, base_raw: dict[str, Any]) -> str:
    """What every trial of a study shares: the base run and the transfer section."""
    payload = {"run": base_raw, "transfer": study.transfer}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _variant_hashes(vectors: dict[str, Any], *, full: bool = False) -> dict[str, str]:
    """One digest per vectors variant: a variant may be added to a study later, never changed. Only the keys that
    differ from their defaults count, so a variant option added in a later llmkt version (with a default that keeps
    the old behaviour) does not change the digest. ``full``: the first 0.3.0.dev digests (every key)."""
    out = {}
    for name, var in vectors.items():
        var = var if isinstance(var, VariantConfig) else VariantConfig.model_validate(var)
        dump = var.model_dump(mode="json", exclude_defaults=not full)
        out[name] = hashlib.sha256(json.dumps(dump, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return out


def _legacy_spec_hash(base_raw: dict[str, Any], transfer: dict[str, Any], vectors: dict[str, Any]) -> str:
    """The 0.3.0.dev digest (base run, transfer section and all variants in one), to upgrade such studies."""
    payload = {"run": base_raw, "transfer": transfer, "vectors": vectors}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_spec(ostudy: Any, study: StudyConfig, base_raw: dict[str, Any], url: str) -> None:
    """Refuse a spec whose trials would not be comparable with the stored ones; record new variants."""
    digest = _spec_hash(study, base_raw)
    variants = _variant_hashes(study.vectors)
    known = ostudy.user_attrs.get("llmkt_spec")
    known_variants = ostudy.user_attrs.get("llmkt_variants")
    if known is not None and known_variants is None:  # made before variants could be added: upgrade
        stored = (ostudy.user_attrs.get("llmkt_config") or {}).get("vectors") or {}
        if _legacy_spec_hash(base_raw, study.transfer, stored) == known:
            known, known_variants = digest, _variant_hashes(stored)
        else:
            known_variants = {}
    elif known_variants:  # digests of every key (the first 0.3.0.dev ones): the same variants, re-keyed
        full = _variant_hashes(study.vectors, full=True)
        known_variants = {n: variants[n] if n in full and full[n] == h else h for n, h in known_variants.items()}
    if known is None:
        ostudy.set_user_attr("llmkt_spec", digest)
        ostudy.set_user_attr("llmkt_config", study.model_dump(mode="json"))
        ostudy.set_user_attr("llmkt_variants", variants)
        return
    if known != digest:
        raise ConfigError(f"study {study.name!r} in {url} was created from another base run or transfer section; "
                          "its trials would not be comparable. Give the study a new name (or dir), or restore the "
                          "spec it was made with (grid values, seeds and new vectors variants may be added).")
    changed = sorted(n for n, h in variants.items() if n in known_variants and known_variants[n] != h)
    if changed:  # a variant without any trial yet may still change
        used = set()
        for t in ostudy.get_trials(deepcopy=False):
            try:
                used.add(json.loads(t.user_attrs.get("cell_key") or "{}").get("variant"))
            except ValueError:
                continue
        changed = [n for n in changed if n in used]
    if changed:
        raise ConfigError(f"study {study.name!r} in {url}: vectors variant(s) {changed} differ from the ones its "
                          "trials were made with; give a changed variant a new name (a variant may be added, never "
                          "changed).")
    merged = {**known_variants, **variants}
    if merged != ostudy.user_attrs.get("llmkt_variants") or known != ostudy.user_attrs.get("llmkt_spec"):
        ostudy.set_user_attr("llmkt_spec", digest)
        ostudy.set_user_attr("llmkt_variants", merged)


# -- checks before any training ---------------------------------------------------------------------------------------
def check_study(study: StudyConfig, base_raw: dict[str, Any], cells: list[Cell], trials_dir: Path) -> dict[str, Any]:
    """Every check that needs no training: each cell's config is valid (an unknown grid path is named), each
    variant's vectors source exists (a profile job's store too), and per model point and variant one transfer
    set-up passes (vectors match the dataset, layer, reducer width)."""
    from llmkt.config.profiles import load_profiles_config
    from llmkt.experiments.inputs import load_dataset
    from llmkt.experiments.transfer import check_transfer

    for name, var in study.vectors.items():
        if var.path is not None and not Path(var.path).exists():
            raise ConfigError(f"vectors.{name}.path: {var.path} does not exist.")
        if var.profiles is not None:
            job = load_profiles_config(var.profiles, list(var.profiles_set))
            if not job.store_path().exists():
                raise ConfigError(f"vectors.{name}.profiles: the profile store {job.store_path()} of {var.profiles} "
                                  "does not exist; run `llmkt profiles generate` (and embed) for that job first.")
    configs: dict[str, RunConfig] = {}
    for cell in cells:
        try:
            configs[cell.id] = cell_config(study, cell, base_raw, trials_dir)
        except ConfigError as e:
            axes = ", ".join(study.grid) or "no grid axes"
            raise ConfigError(f"{e} (grid axes: {axes})") from None
    datasets: dict[str, Any] = {}
    checked: set[str] = set()
    first_seed = study.seeds[0]
    for cell in cells:
        if cell.variant == BASE or cell.seed != first_seed:
            continue
        cfg = configs[cell.id]
        raw = cfg.model_dump(mode="json", exclude={"output"})
        raw["training"]["seed"] = 0
        sig = json.dumps(raw, sort_keys=True, default=str)
        if sig in checked:
            continue
        checked.add(sig)
        dkey = json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)
        if dkey not in datasets:
            datasets[dkey] = load_dataset(cfg)
        if cfg.transfer is None:
            _check_kar(cfg, datasets[dkey])
        else:
            check_transfer(cfg, datasets[dkey])
    return {"cells": len(cells), "transfer_checks": len(checked)}


def _check_kar(cfg: RunConfig, ds: Any) -> None:
    """A KAR cell: building its model reads and checks the knowledge vectors (ids, coverage, widths)."""
    import torch

    from llmkt.data.features import build_features
    from llmkt.experiments.inputs import split_dataset
    from llmkt.experiments.runner import build_run_model

    with torch.random.fork_rng(devices=[]):
        build_run_model(cfg, ds, split_dataset(cfg, ds), build_features(ds))


# -- the study ----------------------------------------------------------------------------------------------------------
@dataclass
class StudyHandle:
    config: StudyConfig
    base_raw: dict[str, Any]
    cells: list[Cell]
    url: str
    storage: Any
    optuna_study: Any

    @property
    def folder(self) -> Path:
        return self.config.folder()

    @property
    def trials_dir(self) -> Path:
        return self.folder / TRIALS

    def cell(self, cell_id: str) -> Cell:
        by_id = {c.id: c for c in self.cells}
        if cell_id not in by_id and self.config.search is not None:  # proposed after this worker opened the study
            self.cells = all_cells(self.config, self.optuna_study)
            by_id = {c.id: c for c in self.cells}
        return by_id[cell_id]


def open_study(spec: str | Path | dict | StudyConfig, overrides: list[str] | None = None, storage: str | None = None,
               *, create: bool = True) -> StudyHandle:
    study = load_study_config(spec, overrides)
    source_dir = Path(spec).parent if isinstance(spec, (str, Path)) else None
    base_raw = study.base_run(source_dir)
    cells = expand(study)
    url = storage_url(study, storage)
    st = open_storage(url)
    optuna = _optuna()
    if create:
        ostudy = optuna.create_study(study_name=study.name, storage=st, direction="maximize", load_if_exists=True)
        _check_spec(ostudy, study, base_raw, url)
    else:
        try:
            ostudy = optuna.load_study(study_name=study.name, storage=st)
        except KeyError:
            raise DataError(f"no study {study.name!r} in {url}; run `llmkt study run` first.") from None
    if study.search is not None:
        cells = all_cells(study, ostudy)
    return StudyHandle(study, base_raw, cells, url, st, ostudy)


def _host_pid() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_here(worker: str | None) -> bool:
    if not worker:
        return False
    host, _, pid = worker.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def reap_stale(h: StudyHandle) -> list[int]:
    """Mark running trials of dead workers failed (heartbeat too old, or a dead process on this host)."""
    optuna = _optuna()
    TS = optuna.trial.TrialState
    now = time.time()
    reaped = []
    for t in h.optuna_study.get_trials(deepcopy=False, states=(TS.RUNNING,)):
        beat = t.user_attrs.get("heartbeat", t.datetime_start.timestamp() if t.datetime_start else now)
        if _dead_here(t.user_attrs.get("worker")) or now - beat > h.config.engine.grace_s:
            h.storage.set_trial_state_values(t._trial_id, TS.FAIL)
            reaped.append(t.number)
    return reaped


def enqueue_missing(h: StudyHandle) -> int:
    """Enqueue every cell that has no finished, running or waiting trial; returns how many."""
    optuna = _optuna()
    TS = optuna.trial.TrialState
    taken = {t.user_attrs.get("cell") for t in h.optuna_study.get_trials(deepcopy=False,
                                                                        states=(TS.COMPLETE, TS.RUNNING, TS.WAITING))}
    n = 0
    for cell in h.cells:
        if cell.id not in taken:
            h.optuna_study.enqueue_trial({}, user_attrs={"cell": cell.id, "cell_key": cell.key})
            n += 1
    return n


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class _Heartbeat:
    def __init__(self, storage: Any, trial_id: int, every: float):
        self.storage, self.trial_id, self.every = storage, trial_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="llmkt-study-heartbeat")

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.storage.set_trial_user_attr(self.trial_id, "heartbeat", time.time())
            except Exception:  # noqa: BLE001 - a busy storage: the next beat will do
                pass

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _history(run_dir: Path, metric: str) -> list[dict[str, float]]:
    import pandas as pd

    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    df = pd.read_csv(path)
    keep = [c for c in ("epoch", "train/loss", "kt/active", "kt/L_model", "kt/L_kt", "kt/beta", "kt/share", f"valid/{metric}",
                        "epoch_seconds", "valid_seconds") if c in df.columns]
    return json.loads(df[keep].to_json(orient="records"))


def run_cell(h: StudyHandle, cell: Cell, data_cache: dict[str, Any], metric: str) -> dict[str, Any]:
    """Train one cell (resuming its run folder when a killed attempt left a ``last.pt``); validation only."""
    import llmkt
    from llmkt.experiments.inputs import load_dataset
    from llmkt.experiments.runner import train

    cfg = cell_config(h.config, cell, h.base_raw, h.trials_dir)
    run_dir = h.trials_dir / cell.name
    dkey = json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True)
    if dkey not in data_cache:
        data_cache[dkey] = load_dataset(cfg)
    resume = run_dir if (run_dir / "last.pt").exists() and not (run_dir / "results.json").exists() else None
    h.folder.mkdir(parents=True, exist_ok=True)
    with open(h.folder / ATTEMPTS, "a") as f:
        f.write(json.dumps({"time": time.time(), "cell": cell.id, "name": cell.name, "worker": _host_pid(),
                            "resume": resume is not None}) + "\n")
    t0 = time.perf_counter()
    res = train(cfg, data=data_cache[dkey], resume_from=resume, evaluate_test=False)
    key = "AUC" if res.model.kind == "ctr" else metric
    import torch

    return {"valid": res.valid.metrics, "value": float(res.valid.metrics[key]), "metric": key,
            "best_epoch": res.best_epoch, "timings": {**res.timings, "wall_s": time.perf_counter() - t0},
            "run_dir": str(run_dir), "history": _history(run_dir, key), "transfer": res.transfer,
            "device": str(next(res.model.parameters()).device),
            "threads": torch.get_num_threads(), "python": platform.python_version(),
            "llmkt": llmkt.__version__, "commit": _git_commit(), "protocol": res.valid.protocol}


def work(h: StudyHandle, *, max_trials: int | None = None, progress: bool = True) -> int:
    """Pop waiting trials and run them until none is left; returns how many this worker ran."""
    optuna = _optuna()
    TS = optuna.trial.TrialState
    metric = h.config.metric or validate_config(h.base_raw).training.monitor
    data_cache: dict[str, Any] = {}
    ran = 0
    while max_trials is None or ran < max_trials:
        if not h.optuna_study.get_trials(deepcopy=False, states=(TS.WAITING,)):
            break
        trial = h.optuna_study.ask()
        cell_id = trial.user_attrs.get("cell")
        if cell_id is None:  # another worker took the last waiting trial first: the sampler made a spare one
            trial.set_user_attr("llmkt_skipped", "spare")
            h.optuna_study.tell(trial, state=TS.PRUNED)
            continue
        others = [t for t in h.optuna_study.get_trials(deepcopy=False, states=(TS.COMPLETE, TS.RUNNING))
                  if t.user_attrs.get("cell") == cell_id and t.number != trial.number]
        if any(t.state == TS.COMPLETE or t.number < trial.number for t in others):
            trial.set_user_attr("llmkt_skipped", "duplicate")
            h.optuna_study.tell(trial, state=TS.PRUNED)
            continue
        trial.set_user_attr("worker", _host_pid())
        trial.set_user_attr("heartbeat", time.time())
        cell = h.cell(cell_id)
        try:
            with _Heartbeat(h.storage, trial._trial_id, h.config.engine.heartbeat_s):
                out = run_cell(h, cell, data_cache, metric)
        except (KeyboardInterrupt, SystemExit):
            trial.set_user_attr("error", "interrupted")
            h.optuna_study.tell(trial, state=TS.FAIL)  # its cell runs again (resuming) at the next start
            raise
        except Exception as e:  # noqa: BLE001 - one cell's failure is recorded and the others go on
            msg = str(e) if isinstance(e, LLMKTError) else f"{type(e).__name__}: {e}"
            trial.set_user_attr("error", f"cell {cell.name}: {msg}"[:2000])
            h.optuna_study.tell(trial, state=TS.FAIL)
            continue
        for k, v in out.items():
            if k != "value":
                trial.set_user_attr(k, v)
        h.optuna_study.tell(trial, out["value"])
        ran += 1
        if progress:
            st = status(h)
            print(f"[study {h.config.name}] {st['complete']}/{st['cells']} cells: {cell.variant} "
                  f"{point_of(h.config, cell)} [{group_of(h.config, cell)}] seed {cell.seed}: valid {out['metric']} "
                  f"{out['value']:.4f} in {out['timings']['wall_s']:.0f} s", file=sys.stderr, flush=True)
    return ran


def _worker_main(spec: Any, overrides: list[str] | None, storage: str | None, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    work(open_study(spec, overrides, storage))


@dataclass
class RunReport:
    study: str
    folder: Path
    storage: str
    cells: int
    enqueued: int
    reaped: list[int]
    ran: int  # cells finished by this command (its workers), not by other machines' workers
    complete: int
    failed: list[str]
    seconds: float


def status(h: StudyHandle) -> dict[str, Any]:
    optuna = _optuna()
    TS = optuna.trial.TrialState
    done = {t.user_attrs.get("cell") for t in h.optuna_study.get_trials(deepcopy=False, states=(TS.COMPLETE,))}
    running = {t.user_attrs.get("cell") for t in h.optuna_study.get_trials(deepcopy=False, states=(TS.RUNNING,))}
    ids = {c.id for c in h.cells}
    out: dict[str, Any] = {"cells": len(ids), "complete": len(ids & done), "running": len(ids & running - done)}
    if h.config.search is not None:  # points proposed so far per search, of n_points
        stored = _stored_points(h.optuna_study)
        out["search_points"] = {f"{json.loads(k)['variant']} {_label_group(k)}": len(stored.get(k, []))
                                for k in search_keys(h.config)}
        out["search_n_points"] = h.config.search.n_points
    return out


def _label_group(key: str) -> str:
    return " ".join(_label(v) for _, v in json.loads(key)["group"]) or "all"


def _run_workers(h: StudyHandle, spec: Any, overrides: list[str] | None, workers: int) -> None:
    if workers <= 1:
        work(h)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(spec if not isinstance(spec, StudyConfig) else
                                                     spec.model_dump(mode="json"), overrides, h.url, threads))
             for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        raise


def run_study(spec: str | Path | dict | StudyConfig, overrides: list[str] | None = None, *, workers: int = 1,
              storage: str | None = None, check: bool = True) -> RunReport:
    """Check, enqueue and run a study with ``workers`` processes here (1: in this process)."""
    t0 = time.perf_counter()
    h = open_study(spec, overrides, storage)
    if check:
        check_study(h.config, h.base_raw, h.cells + _probe_cells(h.config), h.trials_dir)
    reaped = reap_stale(h)
    before = status(h)["complete"]
    enqueued = 0
    while True:  # one pass for a grid; for a search, rounds until every search has its points
        proposed = propose(h)
        enqueued += enqueue_missing(h)
        done = status(h)["complete"]
        _run_workers(h, spec, overrides, workers)
        if h.config.search is None or (status(h)["complete"] == done and not proposed):
            break
    optuna = _optuna()
    failed = [t.user_attrs.get("error", "")[:300] for t in h.optuna_study.get_trials(
        deepcopy=False, states=(optuna.trial.TrialState.FAIL,)) if t.number not in reaped and t.user_attrs.get("error")]
    st = status(h)
    return RunReport(h.config.name, h.folder, h.url, len(h.cells), enqueued, reaped, st["complete"] - before,
                     st["complete"], failed, time.perf_counter() - t0)


# -- the journal as a table, the choice, test of the chosen points ----------------------------------------------------
def trials_table(h: StudyHandle):
    """One row per finished cell: group, variant, point, seed, valid, and the journal fields."""
    import pandas as pd

    optuna = _optuna()
    by_id = {c.id: c for c in h.cells}
    rows = []
    for t in h.optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        cell = by_id.get(t.user_attrs.get("cell"))
        if cell is None:
            continue
        rows.append({"cell": cell.id, "group": group_of(h.config, cell), "variant": cell.variant,
                     "point": point_of(h.config, cell), "seed": cell.seed, "valid": float(t.value),
                     "values": cell.values(), "trial": t.number, **{k: t.user_attrs.get(k) for k in (
                         "run_dir", "timings", "history", "transfer", "metric", "device", "llmkt", "commit")}})
    df = pd.DataFrame(rows)
    if not df.empty:
        df = df.drop_duplicates("cell", keep="first")
    return df


def chosen_cells(h: StudyHandle, trials) -> tuple[list[Any], dict[tuple[str, str], list[str]]]:
    """The choice per (group, variant) and, for each, the cell ids of the chosen point (one per seed)."""
    from llmkt.evaluation.studies import choose

    choices = choose(trials, h.config.seeds)
    cells: dict[tuple[str, str], list[str]] = {}
    for c in choices:
        rows = trials[(trials["group"] == c.group) & (trials["variant"] == c.chosen_variant) &
                      (trials["point"] == c.point)]
        cells[(c.group, c.variant)] = rows.sort_values("seed")["cell"].tolist()
    return choices, cells


def same_point_cells(h: StudyHandle, trials, choices: list[Any]) -> dict[tuple[str, str, str], list[str]]:
    """For every variant whose choice is a transfer point, the cells of each of its controls (``of`` it: shuffled,
    random) at that same point, one per seed; a control that has not finished the point on every seed is left
    out. Empty in a search study, where every variant draws its own points."""
    out: dict[tuple[str, str, str], list[str]] = {}
    need = set(h.config.seeds)
    for c in choices:
        if c.variant == BASE or c.base_chosen:
            continue
        for name, var in h.config.vectors.items():
            if var.of != c.variant:
                continue
            rows = trials[(trials["group"] == c.group) & (trials["variant"] == name) & (trials["point"] == c.point)]
            if set(rows["seed"]) >= need:
                rows = rows[rows["seed"].isin(need)].sort_values("seed")
                out[(c.group, c.variant, name)] = rows["cell"].tolist()
    return out


def evaluate_chosen(h: StudyHandle, trials, cells: dict[Any, list[str]]) -> None:
    """Test metrics and per-user arrays of every chosen cell that has none yet (each cell once)."""
    from llmkt.experiments.evaluate import evaluate_run

    done = set()
    for ids in cells.values():
        for cid in ids:
            if cid in done:
                continue
            done.add(cid)
            run_dir = Path(trials.set_index("cell").loc[cid, "run_dir"])
            if (run_dir / "test.json").exists() and (run_dir / "test_per_user.parquet").exists():
                continue
            t0 = time.perf_counter()
            res = evaluate_run(run_dir, "test")
            seconds = time.perf_counter() - t0
            res.per_user.to_parquet(run_dir / "test_per_user.parquet", index=False)
            (run_dir / "test.json").write_text(json.dumps({"metrics": res.metrics, "protocol": res.protocol,
                                                           "seconds": seconds, "slices": res.extra.get("slices")},
                                                          indent=2))


def finalize(spec: str | Path | dict | StudyConfig, overrides: list[str] | None = None,
             storage: str | None = None) -> dict[str, Any]:
    """Choose on validation, evaluate test of the chosen points and of their controls at the same points
    (:func:`same_point_cells`), write ``selection.json``; returns it."""
    h = open_study(spec, overrides, storage, create=False)
    trials = trials_table(h)
    if trials.empty:
        raise DataError(f"study {h.config.name!r}: no finished trials yet; run `llmkt study run` first.")
    choices, cells = chosen_cells(h, trials)
    same = same_point_cells(h, trials, choices)
    evaluate_chosen(h, trials, {**cells, **same})
    st = status(h)
    out = {"study": h.config.name, "storage": h.url, **st,
           "choices": [{**c.__dict__, "base_chosen": c.base_chosen, "cells": cells[(c.group, c.variant)]}
                       for c in choices],
           "same_point_controls": [{"group": g, "variant": v, "control": k, "cells": ids}
                                   for (g, v, k), ids in same.items()]}
    (h.folder / "selection.json").write_text(json.dumps(out, indent=2, default=str))
    return out


def read_selection(folder: str | Path) -> dict[str, Any]:
    """The ``selection.json`` of a study folder (written by :func:`finalize` / ``llmkt study report``)."""
    path = Path(folder) / "selection.json"
    if not path.is_file():
        raise DataError(f"{path} does not exist; run `llmkt study report` on that study first.")
    return json.loads(path.read_text())


def cell_run_dir(folder: str | Path, cell: str) -> Path:
    """The run folder of a finished cell (``trials/<variant>-s<seed>-<cell>``) of a study folder."""
    found = sorted((Path(folder) / TRIALS).glob(f"*-{cell}"))
    if len(found) != 1:
        what = "no run folder" if not found else f"{len(found)} run folders"
        raise DataError(f"{Path(folder) / TRIALS}: {what} for cell {cell!r}; is the study folder complete "
                        "(`llmkt study status`)?")
    return found[0]


def point_test(run_dirs: list[str | Path], metric: str) -> tuple[Any, list[float]]:
    """The test ``metric`` of one point's runs (one per seed, evaluated on test, e.g. by :func:`finalize`): the
    per-user values averaged over the runs (a Series indexed by uid, what the paired tests take; None for a metric
    without per-user values, such as AUC) and each run's value."""
    import pandas as pd

    series, values = [], []
    for run_dir in map(Path, run_dirs):
        per_user = pd.read_parquet(run_dir / "test_per_user.parquet")
        if metric in per_user.columns:
            series.append(per_user.set_index("uid")[metric])
        values.append(float(json.loads((run_dir / "test.json").read_text())["metrics"][metric]))
    return (pd.concat(series, axis=1).mean(axis=1) if series else None), values
