"""Summaries of a job's stored profiles for ``llmkt profiles stats`` (objects in: records, a quality check)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable

import numpy as np

from llmkt.profiles.store import ProfileRecord


def profile_stats(recs: list[ProfileRecord], check: Callable[[str], list[str]], users: int, store: str,
                  encoders: list[tuple[str, int, int]]) -> dict[str, Any]:
    """Counts, tokens, time, words and quality flags of ``recs`` (the profiles of ``users`` users)."""
    per = [(r, check(r.text)) for r in recs]
    counts = Counter(f for _, fl in per for f in fl)
    words = np.array([len(r.text.split()) for r in recs]) if recs else np.zeros(0)
    secs = np.array([r.seconds for r in recs]) if recs else np.zeros(0)
    return {
        "store": store,
        "model": recs[0].model_id if recs else None,
        "users": users,
        "profiles": len(recs),
        "missing": users - len(recs),
        "prompt_tokens": int(sum(r.prompt_tokens for r in recs)),
        "completion_tokens": int(sum(r.completion_tokens for r in recs)),
        "llm_calls": int(sum(r.calls for r in recs)),
        "seconds_sum": float(secs.sum()),
        "seconds_median": float(np.median(secs)) if len(secs) else 0.0,
        "words_median": float(np.median(words)) if len(words) else 0.0,
        "words_min": int(words.min()) if len(words) else 0,
        "flags": dict(counts),
        # single-call profiles whose answer used the whole max_tokens budget: probably cut mid-sentence
        "hit_max_tokens": sum(1 for r in recs if r.calls == 1 and
                              r.completion_tokens >= json.loads(r.settings).get("max_tokens", 1 << 30)),
        "flagged_profiles": sum(1 for _, fl in per if fl),
        "encoders": [{"encoder": e, "dim": d, "vectors": n} for e, d, n in encoders],
        "flagged_examples": [{"user_id": r.external_user, "flags": fl, "text": r.text} for r, fl in per if fl],
    }
