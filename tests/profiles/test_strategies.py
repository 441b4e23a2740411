import asyncio

import numpy as np
import pytest

from llmkt.errors import ConfigError
from llmkt.profiles.backends.base import Generation
from llmkt.profiles.history import training_histories
from llmkt.profiles.prompts import PromptTemplate
from llmkt.profiles.strategies import Budget, ProfileBuilder, priority


def _full_history(movie_dataset):
    """User 1's whole history (6 interactions) as if all were training data."""
    from llmkt.data.splits import ratio_split

    split = ratio_split(movie_dataset, 1.0, 0.0, 0.0)
    return training_histories(split)[0]


def _items_in(messages):
    return [ln[2:].split(" (")[0].split(" |")[0] for ln in messages[-1]["content"].splitlines() if ln.startswith("- ")]


class Recorder:
    def __init__(self):
        self.prompts = []

    async def __call__(self, messages):
        self.prompts.append(messages)
        return Generation(f"P{len(self.prompts)}", 10, 3)


def _builder(budget, count=lambda m: 0, style="structured"):
    return ProfileBuilder(PromptTemplate.load(style, "movie"), budget, "movie", count)


def test_priority_orders(movie_dataset):
    h = _full_history(movie_dataset)  # ratings 5 4 2 5 3 4 (oldest first)
    assert priority(h, "recent").tolist() == [5, 4, 3, 2, 1, 0]
    assert priority(h, "most_liked").tolist() == [3, 0, 5, 1, 4, 2]  # ties: more recent first
    assert priority(h, "least_liked").tolist() == [2, 4, 5, 1, 3, 0]


def test_select_keeps_time_order(movie_dataset):
    h = _full_history(movie_dataset)
    sel, order = _builder(Budget(select="most_liked", max_items=3)).select(h)
    assert sel.items["title"].tolist() == ["Alpha", "Delta", "Zeta"]
    assert order.tolist() == [1, 0, 2]  # Delta, Alpha, Zeta by importance


def test_truncate_drops_least_important_until_the_prompt_fits(movie_dataset):
    h = _full_history(movie_dataset)
    count = lambda msgs: 10 * len(_items_in(msgs))  # noqa: E731 - 10 tokens per item line
    rec = Recorder()
    res = asyncio.run(_builder(Budget(max_items=None, max_prompt_tokens=35), count).build(h, rec))
    assert len(rec.prompts) == 1
    assert _items_in(rec.prompts[0]) == ["Delta", "Epsilon", "Zeta"]  # the 3 most recent
    assert res.seen.items["item_id"].tolist() == [13, 14, 15]
    assert (res.text, res.calls, res.prompt_tokens, res.completion_tokens) == ("P1", 1, 10, 3)
    with pytest.raises(ConfigError, match="too small for even one"):
        asyncio.run(_builder(Budget(max_prompt_tokens=5), count).build(h, Recorder()))


def test_agg_after_profiles_halves_then_aggregates_pairwise(movie_dataset):
    h = _full_history(movie_dataset)
    rec = Recorder()
    res = asyncio.run(_builder(Budget(max_items=None, long_history="agg_after", chunk_items=2)).build(h, rec))
    # 6 items -> halves of 3 -> (1, 2) and (1, 2): 4 leaves, then 2 + 1 aggregations
    leaves = [_items_in(p) for p in rec.prompts[:4]]
    assert leaves == [["Alpha"], ["Beta", "Gamma"], ["Delta"], ["Epsilon", "Zeta"]]
    aggs = [p[-1]["content"] for p in rec.prompts[4:]]
    assert len(aggs) == 3
    assert "### Period 1\nP1" in aggs[0] and "### Period 2\nP2" in aggs[0]
    assert "### Period 1\nP5" in aggs[2] and "### Period 2\nP6" in aggs[2]
    assert res.text == "P7" and res.calls == 7 and len(res.seen) == 6


def test_agg_with_updates_a_rolling_profile(movie_dataset):
    h = _full_history(movie_dataset)
    rec = Recorder()
    res = asyncio.run(_builder(Budget(max_items=None, long_history="agg_with", chunk_items=4)).build(h, rec))
    assert len(rec.prompts) == 2
    assert _items_in(rec.prompts[0]) == ["Alpha", "Beta", "Gamma", "Delta"]
    second = rec.prompts[1][-1]["content"]
    assert second.startswith("This is the current profile of a user:\nP1")
    assert _items_in(rec.prompts[1]) == ["Epsilon", "Zeta"]
    assert res.text == "P2"


def test_rating_strategies_need_ratings(movie_dataset):
    h = _full_history(movie_dataset)
    h.items["rating"] = np.nan
    with pytest.raises(ConfigError, match="needs ratings"):
        priority(h, "most_liked")
