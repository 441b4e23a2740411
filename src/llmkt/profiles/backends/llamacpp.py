"""Local GGUF models through llama-cpp-python. The chat template stored in the GGUF file is applied."""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmkt.profiles.backends.base import Backend, BackendError, Generation, GenerationSettings, Messages


def gguf_id(path: Path) -> str:
    """``file name + size + SHA-256 of the first 16 MiB``: cheap, and distinct for distinct model files."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(16 << 20))
    return f"{path.name}:{path.stat().st_size}:{h.hexdigest()[:12]}"


class LlamaCppBackend(Backend):
    def __init__(self, model_path: str | Path, *, n_ctx: int = 4096, threads: int = 1, gpu_layers: int = 0,
                 chat_format: str | None = None):
        try:
            from llama_cpp import Llama
        except ImportError as e:
            raise BackendError("backend.kind=llamacpp needs llama-cpp-python: pip install 'llmkt[llamacpp]' "
                               "(builds from source, ~9 min on 2 cores; set CMAKE_ARGS=-DGGML_NATIVE=OFF for a "
                               "portable wheel).") from e
        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"backend.model: GGUF file {path} does not exist.")
        self.model_id = f"llamacpp:{gguf_id(path)}"
        self.n_ctx = n_ctx
        # verbose=False keeps llama.cpp's load log off stdout; it still goes to stderr on errors.
        self.llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                         n_gpu_layers=gpu_layers, chat_format=chat_format, verbose=False, seed=0)

    def count_tokens(self, messages: Messages) -> int:
        text = "\n".join(m["content"] for m in messages)
        return len(self.llm.tokenize(text.encode(), add_bos=True, special=False)) + 8 * len(messages)

    def complete(self, messages: Messages, settings: GenerationSettings) -> Generation:
        n_prompt = self.count_tokens(messages)
        if n_prompt + settings.max_tokens > self.n_ctx:
            raise BackendError(f"prompt ({n_prompt} tokens) + max_tokens ({settings.max_tokens}) exceed the context "
                               f"window n_ctx={self.n_ctx}; lower prompt.max_prompt_tokens or raise backend.n_ctx.")
        self.llm.reset()
        self.llm.set_seed(settings.seed)
        out = self.llm.create_chat_completion(
            messages=messages, max_tokens=settings.max_tokens, temperature=settings.temperature,
            top_p=settings.top_p, repeat_penalty=settings.repeat_penalty, seed=settings.seed,
            stop=list(settings.stop) or None)
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Generation((choice["message"].get("content") or "").strip(), int(usage.get("prompt_tokens", 0)),
                          int(usage.get("completion_tokens", 0)), choice.get("finish_reason"))

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
