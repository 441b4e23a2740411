"""From one user's training history to one profile text: which interactions, how many prompts.

Selection (``select``): ``recent`` (most recent N), ``most_liked`` / ``least_liked`` (by rating, recent first on
ties), ``all``. Long histories (``long_history``):

* ``truncate``: one prompt with the selected interactions; if it exceeds ``max_prompt_tokens`` the least
  important ones (oldest for ``recent``) are dropped until it fits.
* ``agg_after``: split the history in halves recursively until every part fits ``chunk_items`` and the token
  budget, profile each part, then aggregate neighbouring profiles pairwise up the tree.
* ``agg_with``: profile the first chunk, then update the profile with each following chunk in time order.

Both aggregation strategies follow the sequential-distillation reference code. Items are shown oldest first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Literal

import numpy as np

from llmkt.errors import ConfigError
from llmkt.profiles.backends.base import Generation, Messages
from llmkt.profiles.history import UserHistory
from llmkt.profiles.prompts import PromptTemplate

SelectStrategy = Literal["recent", "most_liked", "least_liked", "all"]
LongStrategy = Literal["truncate", "agg_after", "agg_with"]
Call = Callable[[Messages], Awaitable[Generation]]


@dataclass(frozen=True)
class Budget:
    select: SelectStrategy = "recent"
    max_items: int | None = 50
    long_history: LongStrategy = "truncate"
    chunk_items: int = 50
    max_prompt_tokens: int | None = 1500

    def as_dict(self) -> dict:
        return {"select": self.select, "max_items": self.max_items, "long_history": self.long_history,
                "chunk_items": self.chunk_items, "max_prompt_tokens": self.max_prompt_tokens}


@dataclass
class ProfileResult:
    text: str
    seen: UserHistory  # every interaction that appeared in any prompt, oldest first
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    prompts: list[Messages] = field(default_factory=list)


def priority(history: UserHistory, strategy: SelectStrategy) -> np.ndarray:
    """Row indices of ``history.items`` from most to least important for ``strategy``."""
    n = len(history)
    recent_first = np.arange(n)[::-1]
    if strategy in ("recent", "all"):
        return recent_first
    if "rating" not in history.items.columns or history.items["rating"].isna().all():
        raise ConfigError(f"prompt.select={strategy!r} needs ratings, and this dataset has none; use 'recent'.")
    r = history.items["rating"].to_numpy(dtype=float)[recent_first]
    key = -r if strategy == "most_liked" else r
    return recent_first[np.argsort(key, kind="stable")]


class ProfileBuilder:
    def __init__(self, template: PromptTemplate, budget: Budget, domain: str,
                 count_tokens: Callable[[Messages], int]):
        self.t = template
        self.b = budget
        self.domain = domain
        self.count = count_tokens

    def select(self, history: UserHistory) -> tuple[UserHistory, np.ndarray]:
        """The selected interactions (oldest first) and their priority order (indices into the selection)."""
        order = priority(history, self.b.select)
        if self.b.max_items is not None and self.b.select != "all":
            order = order[: self.b.max_items]
        rows = np.sort(order)
        pos = {int(r): i for i, r in enumerate(rows)}
        return history.subset(rows), np.array([pos[int(r)] for r in order], dtype=np.int64)

    def _fits(self, messages: Messages) -> bool:
        return self.b.max_prompt_tokens is None or self.count(messages) <= self.b.max_prompt_tokens

    def _items_prompt(self, h: UserHistory, n_total: int) -> Messages:
        return self.t.render("items", history=h, n_total=n_total, domain=self.domain)

    def fit_truncated(self, h: UserHistory, order: np.ndarray, n_total: int) -> UserHistory:
        """Keep the most important interactions that fit the token budget (binary search on their number)."""
        if self._fits(self._items_prompt(h, n_total)):
            return h
        lo, hi = 0, len(order)  # lo fits (or is 0), hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self._fits(self._items_prompt(h.subset(np.sort(order[:mid])), n_total)):
                lo = mid
            else:
                hi = mid
        if lo == 0:
            raise ConfigError(f"prompt.max_prompt_tokens={self.b.max_prompt_tokens} is too small for even one "
                              "interaction with this template; raise it.")
        return h.subset(np.sort(order[:lo]))

    def _chunks(self, h: UserHistory, n_total: int) -> list[UserHistory]:
        """Halve recursively (agg_after) until each part has <= chunk_items and fits the budget."""
        fits = self._fits(self._items_prompt(h, n_total))
        if len(h) <= 1 or (len(h) <= self.b.chunk_items and fits):
            if not fits:
                raise ConfigError(f"prompt.max_prompt_tokens={self.b.max_prompt_tokens} is too small for one "
                                  "interaction; raise it.")
            return [h]
        mid = len(h) // 2
        return self._chunks(h.subset(slice(0, mid)), n_total) + self._chunks(h.subset(slice(mid, None)), n_total)

    async def build(self, history: UserHistory, call: Call) -> ProfileResult:
        t0 = time.perf_counter()
        selected, order = self.select(history)
        n_total = len(history)
        res = ProfileResult("", selected)

        async def run(messages: Messages) -> str:
            g = await call(messages)
            res.calls += 1
            res.prompt_tokens += g.prompt_tokens
            res.completion_tokens += g.completion_tokens
            res.prompts.append(messages)
            return g.text

        strategy = self.b.long_history
        if strategy == "truncate":
            seen = self.fit_truncated(selected, order, n_total)
            res.seen = seen
            res.text = await run(self._items_prompt(seen, n_total))
        elif strategy == "agg_after":
            level = [await run(self._items_prompt(c, n_total)) for c in self._chunks(selected, n_total)]
            while len(level) > 1:
                nxt = []
                for i in range(0, len(level), 2):
                    pair = level[i:i + 2]
                    nxt.append(pair[0] if len(pair) == 1 else
                               await run(self.t.render("aggregate", profiles=pair, domain=self.domain)))
                level = nxt
            res.text = level[0]
        elif strategy == "agg_with":
            size = self.b.chunk_items
            text = ""
            for start in range(0, len(selected), size):
                chunk = selected.subset(slice(start, start + size))
                msgs = (self._items_prompt(chunk, n_total) if start == 0 else
                        self.t.render("update", history=chunk, previous=text, domain=self.domain))
                if not self._fits(msgs):
                    raise ConfigError(f"prompt.max_prompt_tokens={self.b.max_prompt_tokens}: a chunk of {size} "
                                      "interactions plus the running profile does not fit; lower "
                                      "prompt.chunk_items or raise the budget.")
                text = await run(msgs)
            res.text = text
        else:  # pragma: no cover - the config rejects other values
            raise ConfigError(f"prompt.long_history: unknown strategy {strategy!r}")
        res.seconds = time.perf_counter() - t0
        return res
