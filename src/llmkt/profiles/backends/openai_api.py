"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, OpenAI): ``/v1/chat/completions`` and
``/v1/embeddings``. Async with bounded concurrency, per-request timeouts, retries with exponential backoff and
jitter on connection errors, timeouts, 408/409/429 and 5xx (``Retry-After`` honoured). The API key is read from an
environment variable at call time and never stored in configs, logs, errors or the profile store.

A 200 reply is checked before it is used: a body that is not JSON, has no ``choices`` (or no ``data`` for
embeddings), or whose content is empty or whitespace is a failed attempt, retried with the same backoff as a 5xx and
reported per user when the retries are spent; it never ends the job and never reaches the store."""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any, Callable, TypeVar

from llmkt.profiles.backends.base import Backend, BackendError, Generation, GenerationSettings, Messages

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
T = TypeVar("T")


class BadReply(Exception):
    """A 2xx reply whose body cannot be used (not JSON, fields missing, empty content): retried like a 5xx."""


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
        self.bad_replies = 0
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

    async def post(self, path: str, payload: dict[str, Any], parse: Callable[[dict[str, Any]], T] | None = None
                   ) -> T | dict[str, Any]:
        """POST ``payload``; return ``parse(body)`` (or the JSON body). ``parse`` raises :class:`BadReply` for a
        body it cannot use, which is retried like a 5xx."""
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
                        try:
                            body = r.json()
                            if not isinstance(body, dict):
                                raise BadReply(f"a JSON {type(body).__name__}, not an object")
                            return parse(body) if parse is not None else body
                        except ValueError:  # json.JSONDecodeError, UnicodeDecodeError
                            last = f"HTTP {r.status_code} with a body that is not JSON: {r.text[:120]!r}"
                        except BadReply as e:
                            last = f"HTTP {r.status_code} with an unusable body: {e}"
                        self.bad_replies += 1
                    else:
                        last = f"HTTP {r.status_code}: {r.text[:200]}"
                        if r.status_code not in RETRY_STATUS:
                            raise BackendError(f"{url} answered {last}; not retried. Check backend.model and the "
                                               f"server's log.")
                        retry_after = r.headers.get("retry-after")
                except httpx.HTTPError as e:  # transport errors, timeouts, undecodable bodies
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


def _count(value: Any) -> int:
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return 0


def parse_chat(body: dict[str, Any]) -> Generation:
    """A chat-completions body as a :class:`Generation`; :class:`BadReply` when it has no usable content."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise BadReply(f"no 'choices' in {str(body)[:120]!r}")
    choice = choices[0]
    message = choice.get("message") if isinstance(choice, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if content is not None and not isinstance(content, str):
        raise BadReply(f"'content' is a {type(content).__name__}, not text")
    text = (content or "").strip()
    if not text:
        raise BadReply("empty content" + (f" (finish_reason {choice.get('finish_reason')!r})"
                                          if isinstance(choice, dict) and choice.get("finish_reason") else ""))
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return Generation(text, _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")),
                      choice.get("finish_reason"))


def parse_embeddings(body: dict[str, Any]) -> list[list[float]]:
    """The vectors of an embeddings body in input order; :class:`BadReply` when malformed."""
    data = body.get("data")
    if not isinstance(data, list) or not data:
        raise BadReply(f"no 'data' in {str(body)[:120]!r}")
    try:
        rows = sorted(data, key=lambda d: d["index"])
        return [list(map(float, d["embedding"])) for d in rows]
    except (KeyError, TypeError, ValueError) as e:
        raise BadReply(f"malformed embeddings ({type(e).__name__}: {e})") from None


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
        return await self.client.post("chat/completions", payload, parse_chat)

    def close(self) -> None:
        if self.client._client is not None:
            try:
                asyncio.run(self.client.aclose())
            except RuntimeError:
                pass
