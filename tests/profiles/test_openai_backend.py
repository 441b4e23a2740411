import asyncio

import pytest

from llmkt.profiles.backends.base import BackendError, GenerationSettings
from llmkt.profiles.backends.openai_api import OpenAIBackend

from .http_helpers import FakeOpenAI, Server

MSGS = [{"role": "system", "content": "s"}, {"role": "user", "content": "Here:\n- Alpha (1995) | Drama\n"}]


def test_chat_completion_and_usage(monkeypatch):
    monkeypatch.setenv("LLMKT_TEST_KEY", "sk-secret-123")
    with Server(FakeOpenAI) as srv:
        b = OpenAIBackend("m1", srv.url, api_key_env="LLMKT_TEST_KEY", backoff=0.01)
        g = asyncio.run(b.acomplete(MSGS, GenerationSettings(max_tokens=50, seed=7)))
    assert g.text.endswith("Seen first: Alpha (1995) | Drama. Model m1 seed 7.")
    assert (g.completion_tokens, g.finish_reason) == (30, "stop")
    path, body, headers = srv.requests[0]
    assert path == "/v1/chat/completions" and body["max_tokens"] == 50 and body["messages"] == MSGS
    assert headers["Authorization"] == "Bearer sk-secret-123"


def test_retries_on_503_and_429_then_recovers():
    with Server(FakeOpenAI, fail=[503, 429, 500]) as srv:
        b = OpenAIBackend("m1", srv.url, api_key_env=None, backoff=0.01, max_retries=5)
        g = asyncio.run(b.acomplete(MSGS, GenerationSettings()))
    assert "Preferences" in g.text
    assert len(srv.requests) == 4 and b.client.retries_done == 3


def test_gives_up_after_max_retries_without_leaking_the_key(monkeypatch):
    monkeypatch.setenv("LLMKT_TEST_KEY", "sk-secret-123")
    with Server(FakeOpenAI, fail=[503] * 10) as srv:
        b = OpenAIBackend("m1", srv.url, api_key_env="LLMKT_TEST_KEY", backoff=0.01, max_retries=2)
        with pytest.raises(BackendError, match="gave up after 3 attempts; last error HTTP 503") as e:
            asyncio.run(b.acomplete(MSGS, GenerationSettings()))
    assert "sk-secret" not in str(e.value)
    assert len(srv.requests) == 3


def test_client_errors_are_not_retried():
    with Server(FakeOpenAI, fail=[400]) as srv:
        b = OpenAIBackend("m1", srv.url, api_key_env=None, backoff=0.01)
        with pytest.raises(BackendError, match="HTTP 400.*not retried"):
            asyncio.run(b.acomplete(MSGS, GenerationSettings()))
    assert len(srv.requests) == 1


def test_timeouts_and_dead_servers_are_retried():
    with Server(FakeOpenAI, delay=0.5) as srv:
        b = OpenAIBackend("m1", srv.url, api_key_env=None, timeout=0.1, backoff=0.01, max_retries=1)
        with pytest.raises(BackendError, match="ReadTimeout"):
            asyncio.run(b.acomplete(MSGS, GenerationSettings()))
        assert len(srv.requests) == 2
    b = OpenAIBackend("m1", "http://127.0.0.1:9/v1", api_key_env=None, backoff=0.01, max_retries=1)
    with pytest.raises(BackendError, match="ConnectError"):
        asyncio.run(b.acomplete(MSGS, GenerationSettings()))


def test_concurrent_requests_are_bounded():
    import time

    with Server(FakeOpenAI, delay=0.2) as srv:
        b = OpenAIBackend("m1", srv.url, api_key_env=None, concurrency=2)

        async def many():
            return await asyncio.gather(*(b.acomplete(MSGS, GenerationSettings()) for _ in range(4)))

        t0 = time.perf_counter()
        out = asyncio.run(many())
        took = time.perf_counter() - t0
    assert len(out) == 4 and len(srv.requests) == 4
    assert 0.38 < took < 1.2  # 4 requests of 0.2 s, two at a time: about 0.4 s
