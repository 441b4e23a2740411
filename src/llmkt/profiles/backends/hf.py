"""Hugging Face transformers for local model folders (or a GGUF file, dequantised to fp32 by transformers).
Uses the GPU when one is there; the tokenizer's chat template is applied."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmkt.profiles.backends.base import Backend, BackendError, Generation, GenerationSettings, Messages


def hf_model_id(model: str) -> str:
    """``hf:<file or folder name>`` for local paths, ``hf:<hub name>`` otherwise."""
    p = Path(model).expanduser()
    return f"hf:{p.name if p.exists() else model}"


class HFBackend(Backend):
    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", gguf_file: str | None = None,
                 threads: int | None = None):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise BackendError("backend.kind=hf needs transformers: pip install 'llmkt[hf]'.") from e
        if threads:
            torch.set_num_threads(threads)
        kw: dict[str, Any] = {}
        src = model
        p = Path(model).expanduser()
        if p.is_file() and p.suffix == ".gguf":
            src, kw["gguf_file"] = str(p.parent), p.name
        elif gguf_file:
            kw["gguf_file"] = gguf_file
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        torch_dtype = {"auto": (torch.bfloat16 if device == "cuda" else torch.float32), "float32": torch.float32,
                       "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        self.tokenizer = AutoTokenizer.from_pretrained(src, **kw)
        self.model = AutoModelForCausalLM.from_pretrained(src, dtype=torch_dtype, **kw).to(device).eval()
        self.device = device
        self.model_id = hf_model_id(model)
        self._torch = torch

    def _ids(self, messages: Messages):
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                                  return_dict=True)

    def count_tokens(self, messages: Messages) -> int:
        return int(self._ids(messages)["input_ids"].shape[1])

    def complete(self, messages: Messages, settings: GenerationSettings) -> Generation:
        torch = self._torch
        enc = {k: v.to(self.device) for k, v in self._ids(messages).items()}
        n_prompt = int(enc["input_ids"].shape[1])
        torch.manual_seed(settings.seed)
        sample = settings.temperature > 0
        gen_kw: dict[str, Any] = {"max_new_tokens": settings.max_tokens, "do_sample": sample,
                                  "repetition_penalty": settings.repeat_penalty,
                                  "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if sample:
            gen_kw.update(temperature=settings.temperature, top_p=settings.top_p)
        with torch.inference_mode():
            out = self.model.generate(**enc, **gen_kw)
        new = out[0, n_prompt:]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        for s in settings.stop:
            if s in text:
                text = text[: text.index(s)].rstrip()
        finish = "length" if len(new) >= settings.max_tokens else "stop"
        return Generation(text, n_prompt, int(len(new)), finish)
