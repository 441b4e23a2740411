"""Typed, strict run configuration (pydantic). Unknown keys and wrong types fail before any work.

A run config has the sections ``data``, ``split``, ``model``, ``training``, ``evaluation``, ``output``.
``load_config(path, overrides=["training.epochs=5"])`` reads YAML, applies ``--set`` overrides (values parsed as
YAML scalars, never evaluated as code) and validates. Errors name the key, what was expected and the valid keys.
"""

from __future__ import annotations

from pathlib import Path
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmkt.errors import ConfigError
from llmkt.evaluation.metrics import parse_metric


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Strict):
    name: str = Field("ml-100k", description="dataset name: ml-100k, ml-1m, ml-1m-half, amazon-beauty, "
                                            "amazon-book-rlmrec or csv")
    data_dir: str | None = Field(None, description="data home; default $LLMKT_DATA, else ~/.cache/llmkt/data")
    path: str | None = Field(None, description="folder of this dataset's files (required for csv)")
    download: bool = False
    min_rating: float | None = Field(None, description="keep interactions with rating >= this (implicit feedback)")
    duplicates: Literal["keep_first", "keep_last", "keep_all"] = "keep_last"
    min_user_interactions: int = Field(0, ge=0, description="iterative k-core: minimum interactions per user")
    min_item_interactions: int = Field(0, ge=0, description="iterative k-core: minimum interactions per item")
    positive_rating: float = Field(4.0, description="click-prediction models (deepfm, dcn): label = rating >= this")


class LeaveOneOutSplit(Strict):
    kind: Literal["leave_one_out"] = "leave_one_out"
    min_train: int = Field(1, ge=1)


class GlobalTemporalSplit(Strict):
    kind: Literal["global_temporal"]
    valid_quantile: float = Field(0.8, gt=0, lt=1)
    test_quantile: float = Field(0.9, gt=0, lt=1)


class RatioSplit(Strict):
    kind: Literal["ratio"]
    train: float = Field(0.7, gt=0, le=1)
    valid: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.2, ge=0, lt=1)


class GivenSplit(Strict):
    kind: Literal["given"]
    train: str = Field(..., description="file of training rows: user_id, item_id[, timestamp] (.csv or .tsv); "
                                        "{data} is the dataset's folder")
    valid: str = Field(..., description="file of validation rows, same columns")
    test: str = Field(..., description="file of test rows, same columns")


SplitConfig = Annotated[Union[LeaveOneOutSplit, GlobalTemporalSplit, RatioSplit, GivenSplit],
                        Field(discriminator="kind")]


class _TransformerConfig(Strict):
    max_len: int = Field(200, ge=2)
    hidden: int = Field(64, ge=1)
    n_blocks: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    ff_hidden: int | None = Field(None, ge=1, description="feed-forward width; default: hidden (SASRec), "
                                                          "4 * hidden (BERT4Rec)")
    dropout: float = Field(0.2, ge=0, lt=1)


class SASRecConfig(_TransformerConfig):
    name: Literal["sasrec"] = "sasrec"
    loss: Literal["ce", "bce"] = "ce"
    n_negatives: int = Field(1, ge=1, description="negatives per position for loss=bce")
    norm_first: bool = Field(False, description="false (default, chosen on validation, docs/benchmarks.md): the "
                             "SASRec reference code's block; true: pre-norm blocks")


class BERT4RecConfig(_TransformerConfig):
    name: Literal["bert4rec"]
    mask_prob: float = Field(0.2, gt=0, lt=1)


class MultVAEConfig(Strict):
    name: Literal["multvae"]
    hidden: int = Field(600, ge=1)
    latent: int = Field(200, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    anneal_cap: float = Field(0.2, ge=0)
    anneal_steps: int = Field(20000, ge=1)


class BPRMFConfig(Strict):
    name: Literal["bprmf"]
    dim: int = Field(64, ge=1)
    reg: float = Field(0.0, ge=0, description="L2 weight on the batch's embeddings")
    n_negatives: int = Field(1, ge=1, description="sampled negatives per training interaction")


class LightGCNConfig(Strict):
    name: Literal["lightgcn"]
    dim: int = Field(64, ge=1)
    n_layers: int = Field(3, ge=0, description="propagation steps over the training graph (0 = BPR-MF)")
    reg: float = Field(1e-4, ge=0, description="L2 weight on the batch's layer-0 embeddings")
    n_negatives: int = Field(1, ge=1, description="sampled negatives per training interaction")


class NeuMFConfig(Strict):
    name: Literal["neumf"]
    gmf_dim: int = Field(32, ge=1)
    mlp_dims: list[int] = Field(default_factory=lambda: [64, 32, 16], min_length=2,
                                description="MLP widths; the first is split between user and item embeddings")
    dropout: float = Field(0.0, ge=0, lt=1)
    n_negatives: int = Field(4, ge=1)


class SimpleXConfig(Strict):
    name: Literal["simplex"]
    dim: int = Field(64, ge=1)
    hist_len: int = Field(50, ge=1, description="recent training items aggregated into the user representation")
    gamma: float = Field(0.5, ge=0, le=1, description="weight of the user embedding against the aggregate")
    margin: float = Field(0.9, ge=-1, le=1)
    neg_weight: float = Field(150.0, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    n_negatives: int = Field(100, ge=1)


class DeepFMConfig(Strict):
    name: Literal["deepfm"]
    embed_dim: int = Field(16, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class DCNConfig(Strict):
    name: Literal["dcn"]
    embed_dim: int = Field(16, ge=1)
    n_cross: int = Field(3, ge=1)
    hidden: list[int] = Field(default_factory=lambda: [128, 64], min_length=1)
    dropout: float = Field(0.1, ge=0, lt=1)


class VectorsConfig(Strict):
    path: str | None = Field(None, description=".npz (ProfileVectors.save), .npy (+ ids), .parquet or .csv")
    ids: str | None = Field(None, description="user ids in row order, for a .npy matrix")
    profiles: str | None = Field(None, description="a profile-job YAML (llmkt profiles ...): read its vectors from "
                                                   "the profile store, leak-checked against this run's split")
    profiles_set: list[str] = Field(default_factory=list, description="with profiles: --set overrides of that job, "
                                                                      "e.g. [backend.kind=template]")
    encoder: str | None = Field(None, description="with profiles: encoder id in the store; default: the job's")
    item_text: str | None = Field(None, description="item vectors without an LLM: each item's metadata text (title, "
                                  "year, genres) embedded with this sentence-transformers model (weights name, "
                                  "folder or model id, e.g. all-minilm-l6-v2); for transfer.side: item")
    control: Literal["none", "shuffle", "random"] = Field(
        "none", description="a control run with the same shape: shuffle = each user gets another user's vector, "
                            "random = Gaussian with each dimension's mean and std")
    control_seed: int = Field(0, description="seed of the control's permutation or noise")
    allow_other_dataset: bool = Field(False, description="use vectors whose metadata names another dataset than the "
                                                         "run's (refused by default: ids would match wrong users)")
    min_coverage: float = Field(0.0, ge=0, le=1, description="refuse the run when fewer than this share of the "
                                                             "dataset's users have a vector (1.0: a profile job must "
                                                             "be complete; below 10 % a warning either way)")

    @model_validator(mode="after")
    def _one_source(self):
        if sum(s is not None for s in (self.path, self.profiles, self.item_text)) != 1:
            raise ValueError("give exactly one of path (a vectors file), profiles (a profile-job YAML) or item_text "
                             "(an encoder for the items' metadata text)")
        return self


class ItemKnowledgeConfig(Strict):
    path: str | None = Field(None, description=".npz of item vectors (ProfileVectors.save with item ids)")
    text: bool = Field(False, description="embed each item's metadata text (title, year, genres) instead")
    encoder: str = Field("all-minilm-l6-v2", description="sentence-transformers model for text: weights name, "
                                                         "folder or model name")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (not self.text):
            raise ValueError("give exactly one of path (item vectors) or text: true (embed item metadata)")
        return self


class KARConfig(Strict):
    name: Literal["kar"]
    backbone: Annotated[Union[DeepFMConfig, DCNConfig], Field(discriminator="name")]
    user_knowledge: VectorsConfig
    item_knowledge: ItemKnowledgeConfig = Field(default_factory=lambda: ItemKnowledgeConfig(text=True))
    n_shared: int = Field(2, ge=0)
    n_specific: int = Field(2, ge=1)
    expert_hidden: int = Field(128, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)


ModelConfig = Annotated[Union[SASRecConfig, BERT4RecConfig, MultVAEConfig, BPRMFConfig, LightGCNConfig, NeuMFConfig,
                              SimpleXConfig, DeepFMConfig, DCNConfig, KARConfig], Field(discriminator="name")]


class TrainingConfig(Strict):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_betas: tuple[float, float] = (0.9, 0.999)
    window: Literal["last", "random"] = Field(
        "last", description="training sequence per user and epoch: the last max_len + 1 items, or a random window")
    grad_clip: float | None = Field(None, gt=0)
    seed: int = 42
    deterministic: bool = Field(False, description="torch.use_deterministic_algorithms + fixed seeds")
    num_threads: int | None = Field(None, ge=1, description="torch threads; default: torch's choice")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    monitor: str = Field("NDCG@10", description="validation metric for early stopping and the best checkpoint "
                                                "(click-prediction models always use AUC)")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without improvement")
    eval_every: int = Field(1, ge=1)
    eval_batch_size: int = Field(512, ge=1)
    progress: bool = True

    @field_validator("monitor")
    @classmethod
    def _check_monitor(cls, v: str) -> str:
        parse_metric(v)
        return v


class ColdItemsConfig(Strict):
    share: float = Field(0.2, gt=0, le=1, description="share of the test items made cold")
    keep: int = Field(0, ge=0, description="training interactions each cold item keeps (its earliest; 0: none)")
    seed: int = 0


class SlicesConfig(Strict):
    item_popularity: tuple[float, float] | None = Field(
        (0.2, 0.8), description="shares of items, most popular first, that end head and torso; null: no slice")
    user_history: list[int] | None = Field(default_factory=lambda: [10, 50],
                                           description="edges of users' training history lengths; null: no slice")
    cold_items: ColdItemsConfig | None = Field(None, description="the cold-start protocol (changes training data)")


class EvaluationConfig(Strict):
    ks: list[int] = Field(default_factory=lambda: [10, 20], min_length=1)
    metrics: list[Literal["NDCG", "Recall", "HR", "MRR", "Precision"]] = Field(
        default_factory=lambda: ["NDCG", "Recall", "HR", "MRR", "Precision"])
    protocol: Literal["full", "sampled"] = "full"
    n_negatives: int = Field(100, ge=1, description="negatives per positive in the sampled protocol")
    sampler: Literal["uniform", "popularity"] = "uniform"
    exclude_seen: bool = True
    slices: SlicesConfig | None = Field(None, description="test metrics per slice (items by popularity, users by "
                                                          "history length, cold items); docs/evaluation.md")

    @field_validator("ks")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(k < 1 for k in v):
            raise ValueError("every K must be >= 1")
        return sorted(set(v))


class OutputConfig(Strict):
    dir: str = "runs"
    name: str | None = Field(None, description="run folder name; default <dataset>-<model>-<timestamp>")
    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = Field(default_factory=lambda: ["csv"])
    save_checkpoints: bool = True

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        # the run folder is output.dir/output.name: a name must not reach outside output.dir
        if v is not None and (v in ("", ".", "..") or "/" in v or "\\" in v or ".." in v or "\0" in v):
            raise ValueError("a run folder name must be one plain folder name (no '/', '\\' or '..'); put the "
                             "parent folder in output.dir")
        return v

    @field_validator("dir")
    @classmethod
    def _no_parent_steps(cls, v: str) -> str:
        if not v.strip() or "\0" in v or ".." in Path(v.replace("\\", "/")).parts:
            raise ValueError("output.dir must be a folder path without '..' steps (write the absolute path "
                             "instead), e.g. runs or /data/llmkt-runs")
        return v


class ReducerConfig(Strict):
    method: Literal["umap", "pca", "none"] = "umap"
    dim: int | None = Field(None, ge=1, description="output width; default: the hooked layer's width")
    load: str | None = Field(None, description="reuse a fitted reducer (a run's reducer.npz) instead of fitting")
    n_neighbors: int = Field(15, ge=2)
    min_dist: float = Field(0.1, ge=0)
    metric: Literal["cosine", "euclidean"] = Field("cosine", description="UMAP's metric, also the one a saved "
                                                   "UMAP reducer maps new rows with (nearest training rows)")


class _Step(Strict):
    epochs: int | None = Field(None, ge=0)
    fraction: float | None = Field(None, ge=0, le=1, description="share of training.epochs")
    freeze: list[str] = Field(default_factory=list, description="parameter-name globs frozen in this phase")

    @model_validator(mode="after")
    def _one_length(self):
        if (self.epochs is None) == (self.fraction is None):
            raise ValueError("give exactly one of epochs or fraction")
        return self


class TransferStep(_Step):
    step: Literal["transfer"] = "transfer"
    users: float = Field(1.0, gt=0, le=1, description="share of training users in the transfer loss (seeded)")


class FinetuneStep(_Step):
    step: Literal["finetune"]


ScheduleStep = Annotated[Union[TransferStep, FinetuneStep], Field(discriminator="step")]


ITEM_ROWS_HELP = ("item side: which rows of the item table take part in each step's transfer loss. batch: the "
                  "batch's items; all: every item with a vector, so items without training interactions (cold "
                  "items) are aligned too (docs/transfer.md)")


class ItemTransferConfig(Strict):
    """The item side of a run that transfers on both sides (``transfer.item``): its own vectors, table, loss and
    alpha; the schedule is the run's."""

    vectors: VectorsConfig
    reducer: ReducerConfig = Field(default_factory=ReducerConfig)
    layer: str | None = Field(None, description="an item table (item_emb, ...); default: the model's")
    alignment: Literal["fixed", "slice", "projection"] = "fixed"
    loss: Literal["rmse", "mse", "cosine", "infonce", "relational"] = "rmse"
    temperature: float = Field(0.1, gt=0)
    batch_rows: int | None = Field(None, ge=2, description="infonce/relational: at most this many distinct items of "
                                                           "a batch (a seeded sample); null: all")
    alpha: float = Field(0.5, ge=0, le=1)
    dynamic_beta: bool = False
    item_rows: Literal["batch", "all"] = Field("batch", description=ITEM_ROWS_HELP)


class TransferConfig(Strict):
    vectors: VectorsConfig
    reducer: ReducerConfig = Field(default_factory=ReducerConfig)
    layer: str | None = Field(None, description="exact name, suffix or re:<regex>; default: the model's table entry")
    side: Literal["user", "item"] = Field("user", description="user: a layer's output per batch user reconstructs "
                                          "user vectors; item: an item table's rows (item_emb, ...) for the batch's "
                                          "items reconstruct item vectors (keyed by external item id)")
    item_rows: Literal["batch", "all"] = Field("batch", description=ITEM_ROWS_HELP)
    point: Literal["output", "input"] = "output"
    pooling: Literal["mean", "recency", "attention", "last"] = "mean"
    gamma: float = Field(0.9, gt=0, le=1, description="recency pooling: weight gamma**distance")
    alignment: Literal["fixed", "slice", "projection"] = "fixed"
    loss: Literal["rmse", "mse", "cosine", "infonce", "relational"] = Field(
        "rmse", description="rmse/mse/cosine: per row against its vector; infonce: contrastive with in-batch "
                            "negatives; relational: the batch's pairwise similarities against the vectors' (docs/"
                            "transfer.md)")
    temperature: float = Field(0.1, gt=0, description="infonce: softmax temperature of the cosine similarities")
    batch_rows: int | None = Field(None, ge=2, description="infonce/relational: at most this many distinct rows "
                                                           "(users or items) of a batch, a sample drawn with the "
                                                           "training seed; their cost grows with its square. null: "
                                                           "all")
    alpha: float = Field(0.5, ge=0, le=1)
    dynamic_beta: bool = Field(False, description="beta = detach(L_model / L_kt): alpha * beta * L_kt has L_model's "
                                                  "value, so the share of the transfer term is alpha")
    normalize_model_loss: bool | None = Field(
        None, description="L_model / detach(|L_model|) in the combined loss (value 1): a model loss far from L_kt's "
                          "scale no longer drowns it; default (null): on for models whose loss sums over items "
                          "(MultVAE), off otherwise and with dynamic_beta (docs/transfer.md)")
    schedule: list[ScheduleStep] = Field(
        default_factory=lambda: [TransferStep(fraction=0.5), FinetuneStep(step="finetune", fraction=0.5)],
        min_length=1)
    compare_base: bool = Field(True, description="also train the base model (same seed) and report both")
    item: ItemTransferConfig | None = Field(None, description="transfer on the item side too, at once (this section "
                                            "is then the user side): L = a_i*b_i*L_kt_item + (1 - a_i)*(a_u*b_u*"
                                            "L_kt_user + (1 - a_u)*L_model)")

    @model_validator(mode="after")
    def _both_sides(self):
        if self.dynamic_beta and self.normalize_model_loss:
            raise ValueError("dynamic_beta and normalize_model_loss both rescale the two terms; choose one")
        if self.item_rows != "batch" and self.side != "item":
            raise ValueError(f"transfer.item_rows: {self.item_rows!r} applies to the item side; set transfer.side: "
                             "item, or transfer.item.item_rows for the item side of a two-sided transfer")
        if self.item is not None and self.side != "user":
            raise ValueError("transfer.item adds the item side to a user-side transfer; with side: item leave "
                             "transfer.item out")
        return self


class RunConfig(Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=LeaveOneOutSplit)
    model: ModelConfig = Field(default_factory=SASRecConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    transfer: TransferConfig | None = None


def _resolve(ann: Any) -> tuple[str, Any] | None:
    """What a field annotation holds: a config class, a union of config classes, or a list of something."""
    origin = get_origin(ann)
    if origin is Annotated:
        return _resolve(get_args(ann)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(ann) if a is not type(None)]
        if len(members) == 1:
            return _resolve(members[0])
        if all(isinstance(m, type) and issubclass(m, BaseModel) for m in members):
            return ("union", members)
        return None
    if origin in (list, tuple):
        args = get_args(ann)
        return ("list", args[0]) if args else None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ("model", ann)
    return None


def _tagged(members: list[type[BaseModel]], tag: Any) -> type[BaseModel] | None:
    for m in members:
        for f in m.model_fields.values():
            if get_origin(f.annotation) is Literal and tag in get_args(f.annotation):
                return m
    return None


def _walk(loc: tuple[Any, ...], root: type[BaseModel] | None = None) -> tuple[list[str], type[BaseModel] | None]:
    """The user-facing key path of an error location (union tags dropped) and the config class reached."""
    state: tuple[str, Any] | None = ("model", root or RunConfig)
    shown: list[str] = []
    for part in loc:
        kind = state[0] if state else None
        if kind == "model":
            field = state[1].model_fields.get(str(part))
            shown.append(str(part))
            state = _resolve(field.annotation) if field else None
        elif kind == "list":
            shown.append(str(part))
            state = _resolve(state[1])
        elif kind == "union" and (member := _tagged(state[1], part)) is not None:
            state = ("model", member)
        else:
            shown.append(str(part))
            state = None
    return shown, (state[1] if state and state[0] == "model" else None)


def _format_errors(err: ValidationError, source: str, root: type[BaseModel] | None = None) -> str:
    lines = [f"invalid configuration ({source}):"]
    kind = {"ProfilesConfig": "profiles", "StudyConfig": "study"}.get(root.__name__ if root is not None else "", "run")
    for e in err.errors():
        loc = tuple(e["loc"])
        shown, _ = _walk(loc, root)
        key = ".".join(shown) or "<root>"
        if e["type"] == "extra_forbidden":
            _, holder = _walk(loc[:-1], root)
            valid = sorted(holder.model_fields) if holder else []
            lines.append(f"  {key}: unknown key; valid keys here: {valid}")
        elif e["type"] == "union_tag_invalid":
            lines.append(f"  {key}: {e['msg']}")
        elif e["type"] == "union_tag_not_found":
            lines.append(f"  {key}: {e['msg']}: this section needs that key (e.g. model.name: sasrec).")
        else:
            lines.append(f"  {key}: {e['msg']} (got {e.get('input')!r})")
    tail = f"Fix the YAML or the --set override; `llmkt config-schema {kind}` prints every key with its type."
    if len(lines) == 2:  # one problem: one line
        return f"{lines[0]} {lines[1].strip()}. {tail}"
    return "\n".join(lines + [tail])


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'training.epochs=5'`` -> ``(['training', 'epochs'], 5)``; the value is a YAML scalar or list."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with a dotted key, e.g. training.epochs=5.")
    key, value = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set {text!r}: empty key.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({e}).") from e
    return parts, parsed


#: Sections whose keys depend on a type key (pydantic discriminated unions), by path -> type key.
TYPE_KEYS: dict[tuple[str, ...], str] = {("model",): "name", ("model", "backbone"): "name", ("split",): "kind",
                                         ("backend",): "kind"}


def set_path(raw: dict[str, Any], parts: list[str], value: Any, what: str = "") -> dict[str, Any]:
    """Set ``raw[parts[0]][parts[1]]... = value`` (sections created as needed). Setting a section's type key to
    another type (``model.name``, ``split.kind``, ``backend.kind``) starts that section afresh."""
    node = raw
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if nxt is None:
            nxt = node[p] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"{what or '.'.join(parts)}: {p!r} is a value, not a section.")
        node = nxt
    type_key = TYPE_KEYS.get(tuple(parts[:-1]))
    if type_key == parts[-1] and node.get(type_key) != value:
        node.clear()
    node[parts[-1]] = value
    return raw


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides in order. Setting a section's type key to another type (``model.name``,
    ``split.kind``, ``backend.kind``) starts that section afresh from the new type's defaults, so that
    ``--set backend.kind=template`` switches a llama.cpp job to the template backend without its keys being
    reported as unknown; overrides after it refine the new section (``--set backend.top=5``)."""
    for text in overrides:
        parts, value = parse_override(text)
        set_path(raw, parts, value, f"--set {text!r}")
    return raw


def validate_config(raw: dict[str, Any], source: str = "<dict>", cls: type[BaseModel] | None = None) -> Any:
    """Validate ``raw`` as ``cls`` (default :class:`RunConfig`); errors list every bad key at once."""
    cls = cls or RunConfig
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}.")
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, source, cls)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                cls: type[BaseModel] | None = None) -> Any:
    """Read a YAML config (or start from defaults when ``path`` is None) and validate it as ``cls``
    (default :class:`RunConfig`; ``llmkt.profiles.config.ProfilesConfig`` for profile jobs)."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist.")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            detail = "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
            raise ConfigError(f"{p}: not valid YAML ({detail}).") from None
        source = str(p)
    return validate_config(apply_overrides(raw, overrides or []), source, cls)


def coerce_config(spec: Any, overrides: list[str] | None, cls: type[BaseModel]) -> Any:
    """``spec`` (an instance of ``cls``, a dict or a YAML path) as a validated ``cls`` with ``overrides`` applied."""
    if isinstance(spec, cls):
        return spec if not overrides else validate_config(apply_overrides(spec.model_dump(mode="json"), overrides),
                                                          "<config>", cls)
    if isinstance(spec, dict):
        return validate_config(apply_overrides(dict(spec), overrides or []), "<dict>", cls)
    return load_config(spec, overrides, cls)


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
