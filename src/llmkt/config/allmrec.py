"""Strict configuration of an A-LLMRec job (``llmkt allmrec train|evaluate|generate CONFIG``, docs/allmrec.md).

The CF side is a finished llmkt run folder (``cf_run``): its model (frozen), dataset and split are reused, so the
A-LLMRec job, its frozen CF model and every other llmkt model are evaluated on the same data and candidate sets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from llmkt.config import Strict


class UsersConfig(Strict):
    train: int | None = Field(None, ge=1, description="training users sampled for stage 2 (None: all); stage 1 "
                             "uses every training user (or the few-shot share)")
    train_fraction: float | None = Field(None, gt=0, le=1, description="few-shot: this share of the training "
                                         "users for both stages (applied before `train`)")
    eval: int | None = Field(500, ge=1, description="evaluated users sampled (None: all with a target)")
    stage: Literal["valid", "test"] = "test"
    seed: int = 0


class CandidatesConfig(Strict):
    n: int = Field(20, ge=2, description="candidates per user: 1 positive + n - 1 negatives")
    seed: int = 0
    file: str | None = Field(None, description="a stored candidates CSV to reuse (default: <dir>/candidates.csv)")


class TextEncoderConfig(Strict):
    model: str = Field("all-minilm-l6-v2", description="a sentence-transformers weights name or folder")
    finetune: bool = Field(True, description="fine-tune the encoder in stage 1 as in the paper; false: frozen "
                                             "(title vectors computed once: the CPU setting)")
    max_length: int = Field(64, ge=8)


class Stage1Config(Strict):
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-4, gt=0)
    alpha: float = Field(0.5, ge=0, description="weight of the item reconstruction loss")
    beta: float = Field(0.2, ge=0, description="weight of the text reconstruction loss (the authors' code: 0.2)")
    latent: int = Field(128, ge=2)


class LLMConfig(Strict):
    model: str = Field("smollm2-135m-instruct", description="a weights name (llmkt weights list), a .gguf file, "
                       "a model folder or a Hugging Face hub name")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    chat: bool = Field(True, description="wrap prompts in the tokenizer's chat template (instruct models)")


class Stage2Config(Strict):
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(1e-4, gt=0)
    save_every: int = Field(25, ge=1, description="steps between checkpoints")


class PromptConfig(Strict):
    domain: Literal["product", "movie"] = "product"
    n_history: int = Field(10, ge=1, description="last history items in the prompt")
    max_title_words: int | None = Field(12, ge=1, description="titles cut to this many words (prompt length)")
    max_new_tokens: int = Field(32, ge=1)


class EvalConfig(Strict):
    batch_size: int = Field(8, ge=1)
    llm_only: bool = Field(True, description="also the LLM-only ablation: the same prompt without soft tokens")
    cold_item_quantile: float = Field(0.35, gt=0, lt=1, description="positives whose training popularity is in "
                                      "this lower share of items are cold")
    cold_user_max: int = Field(5, ge=1, description="users with at most this many history items are cold users")
    other_runs: list[str] = Field(default_factory=list, description="more llmkt run folders ranking the same "
                                  "candidate sets (same dataset and split)")


class GenerateConfig(Strict):
    users: int = Field(20, ge=1)
    question: str = Field("What are this user's favourite categories or genres? Answer with a short list.")
    max_new_tokens: int = Field(48, ge=1)


class AllmrecConfig(Strict):
    name: str = "allmrec"
    cf_run: str = Field(..., description="a finished llmkt run folder whose model has item embeddings (SASRec)")
    dir: str = Field("runs/allmrec/{name}", description="job folder ({name} is replaced)")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(None, ge=1)
    progress: bool = True
    users: UsersConfig = Field(default_factory=UsersConfig)
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig)
    text_encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    stage1: Stage1Config = Field(default_factory=Stage1Config)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    stage2: Stage2Config = Field(default_factory=Stage2Config)
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    evaluation: EvalConfig = Field(default_factory=EvalConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)

    def job_dir(self) -> Path:
        return Path(self.dir.replace("{name}", self.name))


def load_allmrec_config(spec: "AllmrecConfig | str | Path | dict[str, Any]",
                        overrides: list[str] | None = None) -> AllmrecConfig:
    from llmkt.config import coerce_config

    return coerce_config(spec, overrides, AllmrecConfig)
