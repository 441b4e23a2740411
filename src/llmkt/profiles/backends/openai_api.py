"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, OpenAI): ``/v1/chat/completions`` and
``/v1/embeddings``. Async with bounded concurrency, per-request timeouts, retries with exponential backoff and
jitter on connection errors, timeouts, 408/409/429 and 5xx (``Retry-After`` honoured). The API key is read from an
environment variable at call time and never stored in configs, logs, errors or the profile store."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

from llmkt.profiles.backends.base import Backend, BackendError, Generation, GenerationSettings, Messages

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def _httpx():
    try:
        import httpx
    except ImportError as e:
        raise BackendError("the OpenAI-compatible backend needs httpx: pip install 'llmkt[api]'.") from e
    return httpx


class OpenAIClient:
    """Shared HTTP logic for chat and embeddings. One ``httpx.AsyncClient`` per event loop."""

    def __init__(self, base_url: str, *, api_key_env: str | None = "OPENAI_API_KEY", timeout: float = 120.0,
                 max_retries: int = 5, backoff: float = 1.0, max_backoff: float = 30.0, concurrency: int = 4):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.concurrency = concurrency
        self.retries_done = 0
        self._client: Any = None
        self._loop: Any = None
        self._sem: asyncio.Semaphore | None = None

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _ensure(self):
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            httpx = _httpx()
            self._client = httpx.AsyncClient(timeout=self.timeout)
            self._loop = loop
            self._sem = asyncio.Semaphore(self.concurrency)
        return self._client

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(self.max_backoff, float(retry_after))
            except ValueError:
                pass
        return min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + random.random() / 2)

    async def post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        httpx = _httpx()
        client = self._ensure()
        url = f"{self.base_url}/{path.lstrip('/')}"
        last = ""
        async with self._sem:
            for attempt in range(self.max_retries + 1):
                retry_after = None
                try:
                    r = await client.post(url, json=payload, headers=self._headers())
                    if r.status_code < 400:
                        return r.json()
                    last = f"HTTP {r.status_code}: {r.text[:200]}"
                    if r.status_code not in RETRY_STATUS:
                        raise BackendError(f"{url} answered {last}; not retried. Check backend.model and the "
                                           f"server's log.")
                    retry_after = r.headers.get("retry-after")
                except (httpx.TransportError, httpx.TimeoutException) as e:
                    last = f"{type(e).__name__}: {e}"
                if attempt < self.max_retries:
                    self.retries_done += 1
                    await asyncio.sleep(self._delay(attempt, retry_after))
        raise BackendError(f"{url}: gave up after {self.max_retries + 1} attempts; last error {last}. "
                           "Finished profiles are stored; rerun to resume.")

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class OpenAIBackend(Backend):
    def __init__(self, model: str, base_url: str = "http://127.0.0.1:8000/v1", **client_kw: Any):
        self.model = model
        self.client = OpenAIClient(base_url, **client_kw)
        self.model_id = f"openai:{model}"

    async def acomplete(self, messages: Messages, settings: GenerationSettings) -> Generation:
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": settings.max_tokens,
                                   "temperature": settings.temperature, "top_p": settings.top_p,
                                   "seed": settings.seed}
        if settings.stop:
            payload["stop"] = list(settings.stop)
        out = await self.client.post("chat/completions", payload)
        try:
            choice = out["choices"][0]
            text = (choice["message"].get("content") or "").strip()
        except (KeyError, IndexError, TypeError) as e:
            raise BackendError(f"{self.client.base_url}: unexpected chat response {str(out)[:200]!r}") from e
        usage = out.get("usage") or {}
        return Generation(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                          choice.get("finish_reason"))

    def close(self) -> None:
        if self.client._client is not None:
            try:
                asyncio.run(self.client.aclose())
            except RuntimeError:
                pass
