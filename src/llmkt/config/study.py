"""Strict configuration of a study (``llmkt study run SPEC``): one base run config, a grid over any config path,
knowledge-vector variants with their controls, seeds, and the validation metric the choice is made on.

A study answers "does LLM knowledge help this model?": for every model group (the grid axes under ``model``) and
every vectors variant, the grid point is chosen on validation, the base model (no transfer, alpha = 0) always
among the candidates; test metrics are computed for the chosen points only (docs/studies.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator

from llmkt.config import Strict, apply_overrides, load_config, validate_config
from llmkt.errors import ConfigError

#: the implicit variant without vectors: the base model
BASE = "none"


class VariantConfig(Strict):
    """One kind of knowledge vectors. A source (``path`` or ``profiles``) or a control ``of`` another variant."""

    path: str | None = Field(None, description="a vectors file (.npz, .npy + ids, .parquet, .csv)")
    ids: str | None = None
    profiles: str | None = Field(None, description="a profile-job YAML: its vectors from the profile store")
    profiles_set: list[str] = Field(default_factory=list, description="--set overrides for that profile job, "
                                                                      "e.g. [backend.kind=template]")
    encoder: str | None = None
    item_text: str | None = Field(None, description="item vectors without an LLM: the items' metadata text embedded "
                                                    "with this encoder (use with transfer: {side: item})")
    use: Literal["transfer", "kar"] = Field("transfer", description="transfer: the auxiliary loss of knowledge "
                                            "transfer (the grid's transfer.* axes apply); kar: the vectors as KAR's "
                                            "user knowledge input around the run's click-prediction model")
    kar: dict[str, Any] = Field(default_factory=dict, description="with use: kar, keys of the KAR model section "
                                                                   "(n_shared, n_specific, item_knowledge, ...)")
    of: str | None = Field(None, description="a control: the vectors of this other variant, shuffled or random")
    control: Literal["none", "shuffle", "random"] = "none"
    allow_other_dataset: bool = False
    min_coverage: float = Field(0.0, ge=0, le=1, description="refuse cells whose vectors cover fewer of the "
                                                             "dataset's users (1.0: the profile job must be complete)")
    transfer: dict[str, Any] = Field(default_factory=dict, description="keys of the transfer section that differ "
                                                                       "for this variant (a control inherits its "
                                                                       "source's), e.g. {reducer: {method: none}}")

    @model_validator(mode="after")
    def _source(self):
        sources = [s for s in (self.path, self.profiles, self.item_text, self.of) if s is not None]
        if len(sources) != 1:
            raise ValueError("give exactly one of path, profiles, item_text or of (a control of another variant)")
        if self.of is not None and self.control == "none":
            raise ValueError("a variant 'of' another one is a control: set control: shuffle or random")
        if self.use == "kar" and self.transfer:
            raise ValueError("a KAR variant trains without knowledge transfer: drop its transfer keys")
        if self.use != "kar" and self.kar:
            raise ValueError("kar keys need use: kar")
        return self


class EngineConfig(Strict):
    storage: str | None = Field(None, description="Optuna storage: a SQLAlchemy URL (sqlite:///..., "
                                                  "postgresql://...) or journal:PATH; default: sqlite in the study "
                                                  "folder")
    heartbeat_s: float = Field(30.0, gt=0, description="a running trial records a heartbeat this often")
    grace_s: float = Field(120.0, gt=0, description="a running trial without heartbeat for this long is taken "
                                                    "for dead and re-run (a dead process on this host: at once)")


class SearchRange(Strict):
    """A numeric search axis: ``{low, high}``, ``log: true`` for a log scale, ``int: true`` for integers."""

    low: float
    high: float
    log: bool = False
    int: bool = False

    @model_validator(mode="after")
    def _order(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale range needs low > 0")
        return self


class SearchConfig(Strict):
    """A model-based search instead of a grid over the tuned axes: per model group and vectors variant, points
    proposed in rounds by Optuna's TPE sampler from the mean validation metric over seeds of the finished ones."""

    sampler: Literal["tpe"] = "tpe"
    space: dict[str, SearchRange | list[Any]] = Field(..., min_length=1, description="config path -> {low, high, "
                                                      "log, int} or a list of choices")
    n_points: int = Field(..., ge=1, description="points per (model group, variant), all rounds together")
    per_round: int = Field(4, ge=1, description="points proposed at once (they run in parallel)")
    n_startup: int = Field(4, ge=1, description="random points before TPE models the results")
    seed: int = 0

    @field_validator("space")
    @classmethod
    def _choices(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, axis in v.items():
            if isinstance(axis, list) and not axis:
                raise ValueError(f"search axis {key!r} has no choices")
            if key.startswith("transfer.vectors"):
                raise ValueError(f"search axis {key!r}: vectors are the study's `vectors` variants")
        return v


class StudyConfig(Strict):
    name: str = Field(..., description="study name (Optuna study name, report title)")
    dir: str = Field("studies/{name}", description="study folder: trials, storage, report; {name} is replaced")
    run: str | dict[str, Any] = Field(..., description="the base run config: a YAML path or an inline mapping")
    overrides: list[str] = Field(default_factory=list, description="--set overrides applied to the base run")
    transfer: dict[str, Any] = Field(default_factory=dict, description="the transfer section of transfer trials "
                                                                        "(vectors are set per variant)")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="config path -> values; a value may be a "
                                       "whole section (model: [{name: neumf}]) or a bundle that sets several paths "
                                       "({label: neumf, set: {model: {name: neumf}, training.epochs: 20}})")
    group_by: list[str] | None = Field(None, description="grid axes that make separate rows of the report (one "
                                                        "choice each); default: the axes under model")
    vectors: dict[str, VariantConfig | None] = Field(default_factory=dict, description="variant name -> vectors "
                                                     "(null leaves a variant out: --set vectors.llm=null)")
    search: SearchConfig | None = Field(None, description="TPE search over the tuned axes instead of a grid (the "
                                                           "grid then holds the model group axes only)")
    seeds: list[int] = Field(..., min_length=1, description="training.seed of each repetition")
    metric: str | None = Field(None, description="validation metric of the choice; default: training.monitor "
                                                 "(AUC for click prediction)")
    report_metrics: list[str] = Field(default_factory=list, description="more test metrics of the chosen points "
                                      "for the report (mean ± std over seeds; the paired tests stay on `metric`), "
                                      "e.g. [Recall@20, NDCG@10]")
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @field_validator("report_metrics")
    @classmethod
    def _metrics(cls, v: list[str]) -> list[str]:
        from llmkt.evaluation.metrics import parse_metric

        for m in v:
            parse_metric(m)
        return v

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not v or "/" in v or "\\" in v or ".." in v:
            raise ValueError("a study name is one plain name (no '/', '\\' or '..')")
        return v

    @field_validator("grid")
    @classmethod
    def _non_empty(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"grid axis {key!r} has no values; give at least one or drop the axis")
            if key.startswith("transfer.vectors"):
                raise ValueError(f"grid axis {key!r}: vectors are the study's `vectors` variants, not a grid axis")
        return v

    @model_validator(mode="after")
    def _variants(self):
        dropped = {n for n, v in self.vectors.items() if v is None}
        for name, var in list(self.vectors.items()):
            if var is not None and var.of in dropped:
                dropped.add(name)  # a control of a left-out variant goes with it
        object.__setattr__(self, "vectors", {n: v for n, v in self.vectors.items() if n not in dropped})
        for name, var in self.vectors.items():
            if name == BASE:
                raise ValueError(f"vectors: {BASE!r} is the base model, always present; name the variant otherwise")
            if var.of is not None:
                if var.of not in self.vectors:
                    raise ValueError(f"vectors.{name}.of: no variant {var.of!r}; variants: {sorted(self.vectors)}")
                if self.vectors[var.of].of is not None:
                    raise ValueError(f"vectors.{name}.of: {var.of!r} is itself a control; point to a source")
        for axis in self.group_by or []:
            if axis not in self.grid:
                raise ValueError(f"group_by: {axis!r} is not a grid axis ({sorted(self.grid)})")
        if self.search is not None:
            tuned = [a for a in self.grid if a not in self.group_axes()]
            if tuned:
                raise ValueError(f"with search, the grid holds the model group axes only; move {tuned} into "
                                 "search.space (a range or a list of choices)")
            both = sorted(set(self.search.space) & set(self.grid))
            if both:
                raise ValueError(f"{both}: an axis is either a grid axis or a search axis")
        return self

    def folder(self) -> Path:
        return Path(self.dir.replace("{name}", self.name))

    def group_axes(self) -> list[str]:
        if self.group_by is not None:
            return list(self.group_by)
        return [a for a in self.grid if a == "model" or a.startswith("model.")]

    def base_run(self, source_dir: Path | None = None) -> dict[str, Any]:
        """The base run config as a raw mapping (overrides applied, not yet validated)."""
        if isinstance(self.run, str):
            path = Path(self.run)
            if not path.is_absolute() and source_dir is not None and not path.exists():
                path = source_dir / path
            raw = load_config(path).model_dump(mode="json")  # validated once: errors name that file
        else:
            raw = dict(self.run)
        return apply_overrides(raw, list(self.overrides))


def load_study_config(spec: "str | Path | dict | StudyConfig", overrides: list[str] | None = None) -> StudyConfig:
    if isinstance(spec, StudyConfig):
        return spec if not overrides else validate_config(apply_overrides(spec.model_dump(mode="json"), overrides),
                                                          "<study>", StudyConfig)
    if isinstance(spec, dict):
        return validate_config(apply_overrides(dict(spec), overrides or []), "<study>", StudyConfig)
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"study spec {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        detail = "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
        raise ConfigError(f"{path}: not valid YAML ({detail}).") from None
    return validate_config(apply_overrides(raw, overrides or []), str(path), StudyConfig)
