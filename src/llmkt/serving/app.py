"""The HTTP API of an exported model (FastAPI + uvicorn: ``pip install 'llmkt[serve]'``; docs/serving.md).

    POST /recommend           {"user_id": 196, "k": 10, "exclude_seen": true}   known user, stored history
    POST /recommend/history   {"item_ids": [1, 50, 181], "k": 10}               a posted history (sequential and
                                                                                 user-row models)
    GET  /health              {"status": "ok"}
    GET  /metadata            model, data, metrics at training, export time, batching counters
    GET  /docs                OpenAPI docs (FastAPI)

Errors are JSON ``{"detail": ...}``: unknown user 404; unknown item ids (named), k out of range, a history posted to
a model with per-user parameters 422. Requests are batched on the server: one scoring task takes every request
that arrived within ``max_wait_ms`` (up to ``max_batch``) and scores them as one tensor batch in a worker thread,
so the event loop keeps accepting requests while the model runs.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Union

import numpy as np

from llmkt.errors import ConfigError
from llmkt.serving.exported import ExportedModel

try:
    from fastapi import FastAPI, HTTPException
    from pydantic import BaseModel, ConfigDict, Field
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ConfigError("llmkt serve needs FastAPI and uvicorn: pip install 'llmkt[serve]'.") from e

Id = Union[int, str]


class UserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Id
    k: int = 10
    exclude_seen: bool = True


class HistoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_ids: list[Id] = Field(min_length=1, description="external item ids, oldest first")
    k: int = 10
    exclude_seen: bool = True


class Item(BaseModel):
    item_id: Id
    score: float
    title: str | None = None


class Recommendation(BaseModel):
    user_id: Id | None
    items: list[Item]


class Batcher:
    """Collects requests for up to ``max_wait_ms`` (at most ``max_batch``) and scores them as one batch in a
    single worker thread (torch already uses the cores it is given; one scoring call at a time)."""

    def __init__(self, exported: ExportedModel, max_batch: int = 64, max_wait_ms: float = 2.0):
        if max_batch < 1 or max_wait_ms < 0:
            raise ConfigError(f"serve: max_batch must be >= 1 and max_wait_ms >= 0; got {max_batch}, {max_wait_ms}.")
        self.exported, self.max_batch, self.max_wait = exported, max_batch, max_wait_ms / 1000
        self.queue: asyncio.Queue | None = None
        self.pool: ThreadPoolExecutor | None = None  # made by start(), with the queue, when the app starts
        self.batches = 0
        self.requests = 0
        self.largest = 0

    async def submit(self, uid: int, history: np.ndarray, k: int, exclude_seen: bool):
        fut = asyncio.get_running_loop().create_future()
        await self.queue.put((uid, history, k, exclude_seen, fut))
        return await fut

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self.queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), left))
                except asyncio.TimeoutError:
                    break
            try:
                res = await self._score(loop, batch)
            except Exception:  # noqa: BLE001 - score one by one: only the request at fault fails
                for b in batch:
                    try:
                        (r,) = await self._score(loop, [b])
                    except Exception as e:  # noqa: BLE001 - handed to the waiting request (a 500)
                        if not b[4].done():
                            b[4].set_exception(e)
                    else:
                        if not b[4].done():
                            b[4].set_result(r)
                continue
            self.batches, self.requests = self.batches + 1, self.requests + len(batch)
            self.largest = max(self.largest, len(batch))
            for b, r in zip(batch, res):
                if not b[4].done():
                    b[4].set_result(r)

    async def _score(self, loop, batch):
        uids = np.asarray([b[0] for b in batch], dtype=np.int64)
        return await loop.run_in_executor(self.pool, self.exported.top_k, uids, [b[1] for b in batch],
                                          [b[2] for b in batch], [b[3] for b in batch])

    def stats(self) -> dict[str, Any]:
        return {"max_batch": self.max_batch, "max_wait_ms": self.max_wait * 1000, "batches": self.batches,
                "requests": self.requests, "largest_batch": self.largest,
                "mean_batch": self.requests / self.batches if self.batches else 0.0}


def create_app(exported: ExportedModel, max_batch: int = 64, max_wait_ms: float = 2.0) -> FastAPI:
    """The FastAPI app serving ``exported`` (run it with uvicorn; ``llmkt serve DIR`` does)."""
    batcher = Batcher(exported, max_batch, max_wait_ms)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.queue = asyncio.Queue()
        batcher.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmkt-score")
        task = asyncio.create_task(batcher.run())
        try:
            yield
        finally:
            task.cancel()
            batcher.pool.shutdown(wait=False)

    spec, meta = exported.spec, exported.metadata
    app = FastAPI(title=f"llmkt: {spec['model']} on {meta.get('dataset')}", version=str(meta.get("llmkt_version")),
                  description="Top-k recommendations from an exported llmkt model (no LLM at serving time).",
                  lifespan=lifespan)

    def check_k(k: int) -> None:
        if not 1 <= k <= exported.n_items:
            raise HTTPException(422, f"k must be between 1 and {exported.n_items} (the number of items); got {k}.")

    def answer(user_id, result) -> Recommendation:
        ids, scores = result
        titles = exported.titles
        return Recommendation(user_id=user_id, items=[
            Item(item_id=exported.item_ids[i - 1], score=float(s), title=titles[i - 1] if titles else None)
            for i, s in zip(ids.tolist(), scores.tolist())])

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metadata")
    async def metadata() -> dict[str, Any]:
        return {"model": spec["model"], "kind": spec["kind"], "params": spec["params"], "n_users": spec["n_users"],
                "n_items": spec["n_items"], "accepts_history": exported.accepts_history,
                **{k: v for k, v in meta.items() if k != "files"},
                "serving": {**batcher.stats(), "up_seconds": round(time.time() - started, 1)}}

    @app.post("/recommend", response_model=Recommendation)
    async def recommend(req: UserRequest) -> Recommendation:
        check_k(req.k)
        uid = exported.user_index(req.user_id)
        if uid is None:
            raise HTTPException(404, f"unknown user_id {req.user_id!r}: the model knows {spec['n_users']} users; "
                                     "POST /recommend/history with the user's item ids instead"
                                     + ("" if exported.accepts_history else " (not for this model)") + ".")
        return answer(req.user_id, await batcher.submit(uid, exported.history(uid), req.k, req.exclude_seen))

    @app.post("/recommend/history", response_model=Recommendation)
    async def recommend_history(req: HistoryRequest) -> Recommendation:
        check_k(req.k)
        if not exported.accepts_history:
            raise HTTPException(422, f"model {spec['model']!r} scores known users only (it has per-user "
                                     "parameters); POST /recommend with a user_id.")
        ids, unknown = exported.item_indices(req.item_ids)
        if unknown:
            raise HTTPException(422, {"message": f"{len(unknown)} unknown item id(s)", "unknown_item_ids": unknown[:50]})
        return answer(None, await batcher.submit(0, ids, req.k, req.exclude_seen))

    return app


def serve(path: str, host: str = "127.0.0.1", port: int = 8000, max_batch: int = 64, max_wait_ms: float = 2.0,
          threads: int | None = None, log_level: str = "info") -> None:
    """Load the export at ``path`` and serve it with uvicorn until interrupted."""
    try:
        import uvicorn
    except ImportError as e:
        raise ConfigError("llmkt serve needs uvicorn: pip install 'llmkt[serve]'.") from e
    import torch

    from llmkt.serving.exported import load_exported

    if threads:
        torch.set_num_threads(threads)
    app = create_app(load_exported(path), max_batch, max_wait_ms)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
