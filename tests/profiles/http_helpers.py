"""Local HTTP servers for the OpenAI-compatible backend tests: a deterministic fake server, and a proxy that
fails chosen requests in front of a real server. Both listen on 127.0.0.1 on a free port."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Base(BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass

    def _send(self, status: int, body: dict | str, headers: dict | None = None) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class Server:
    """Run a handler class in a thread; ``url`` is the /v1 base; ``requests`` records (path, json, headers)."""

    def __init__(self, handler: type, **state):
        self.requests: list[tuple[str, dict, dict]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(handler):
            server_state = state
            owner = outer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeOpenAI(_Base):
    """Answers chat completions with a profile that quotes the first history line; embeddings are 4-d.

    State: ``delay`` seconds per request, ``fail`` = list of statuses for the first requests (e.g. [503, 429]).
    """

    def do_POST(self):  # noqa: N802 - http.server API
        n = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(n) or b"{}")
        with self.owner.lock:
            self.owner.requests.append((self.path, body, dict(self.headers)))
            index = len(self.owner.requests) - 1
        st = self.server_state
        time.sleep(st.get("delay", 0.0))
        fail = st.get("fail", [])
        if index < len(fail):
            self._send(fail[index], {"error": "injected"}, {"Retry-After": "0"} if fail[index] == 429 else None)
            return
        if self.path.endswith("/chat/completions"):
            prompt = body["messages"][-1]["content"]
            first = next((ln for ln in prompt.splitlines() if ln.startswith("- ")), "- none")
            text = (f"Preferences: dramas 50%, comedies 30%. Behaviour: rates generously. Trend: more recent "
                    f"films lately. Seen first: {first[2:]}. Model {body['model']} seed {body.get('seed')}.")
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": text},
                                          "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": len(prompt) // 4, "completion_tokens": 30}})
        elif self.path.endswith("/embeddings"):
            data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0, float(i)]} for i, t in enumerate(body["input"])]
            self._send(200, {"data": data})
        else:
            self._send(404, {"error": "not found"})


class FaultProxy(_Base):
    """Forwards to ``upstream`` (a base URL without /v1) except for the first requests listed in ``fail``."""

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(n)
        with self.owner.lock:
            self.owner.requests.append((self.path, json.loads(raw or b"{}"), dict(self.headers)))
            index = len(self.owner.requests) - 1
        fail = self.server_state.get("fail", [])
        if index < len(fail):
            self._send(fail[index], {"error": "injected failure"})
            return
        req = urllib.request.Request(self.server_state["upstream"] + self.path, data=raw,
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=300) as r:
            self._send(r.status, r.read().decode())


class GarbageOpenAI(FakeOpenAI):
    """A server that answers 200 but with garbage for some requests, chosen by a seeded draw per request index:
    ``garbage`` share of bodies that are not usable (not JSON, JSON without ``choices``, an empty body, in turn) and
    ``empty`` share of replies whose content is empty or whitespace. Counts land in ``owner.bad``."""

    def do_POST(self):  # noqa: N802
        import random

        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        st = self.server_state
        with self.owner.lock:
            index = len(self.owner.requests)
            draw = random.Random(st.get("seed", 0) * 1_000_003 + index).random()
            kind = ("garbage" if draw < st.get("garbage", 0.0) else
                    "empty" if draw < st.get("garbage", 0.0) + st.get("empty", 0.0) else "ok")
            if kind != "ok":
                self.owner.requests.append((self.path, json.loads(body or b"{}"), dict(self.headers)))
                self.owner.bad = getattr(self.owner, "bad", []) + [(index, kind)]
        time.sleep(st.get("delay", 0.0))
        if kind == "garbage":
            variant = index % 3
            if variant == 0:
                self._send(200, "<html><body>502 Bad Gateway</body></html>")
            elif variant == 1:
                self._send(200, {"object": "error", "message": "model overloaded"})
            else:
                self._send(200, "")
            return
        if kind == "empty":
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": ["", "   \n"][index % 2]},
                                          "finish_reason": "stop"}], "usage": {"prompt_tokens": 5,
                                                                               "completion_tokens": 0}})
            return
        # a good answer: let FakeOpenAI record and answer it (it re-reads the body we already consumed)
        self.rfile = __import__("io").BytesIO(body)
        super().do_POST()
